package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/gatehouse/gatehouse/services/config"
)

// k8sObject is what the test reads of a rendered object.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name        string            `yaml:"name"`
		Annotations map[string]string `yaml:"annotations"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		Replicas int `yaml:"replicas"`
		Selector struct {
			MatchLabels map[string]string `yaml:"matchLabels"`
		} `yaml:"selector"`
		// Service
		Ports []struct {
			Name       string `yaml:"name"`
			Port       int    `yaml:"port"`
			TargetPort string `yaml:"targetPort"`
		} `yaml:"ports"`
		// StatefulSet
		ServiceName          string          `yaml:"serviceName"`
		VolumeClaimTemplates []claimTemplate `yaml:"volumeClaimTemplates"`
		// Deployment, StatefulSet, Job
		Template struct {
			Metadata struct {
				Labels map[string]string `yaml:"labels"`
			} `yaml:"metadata"`
			Spec podSpec `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type claimTemplate struct {
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
}

type podSpec struct {
	Containers []struct {
		Args  []string `yaml:"args"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
		} `yaml:"ports"`
		Env []struct {
			Name      string `yaml:"name"`
			Value     string `yaml:"value"`
			ValueFrom *struct {
				SecretKeyRef struct {
					Name string `yaml:"name"`
					Key  string `yaml:"key"`
				} `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		EnvFrom []struct {
			SecretRef struct {
				Name string `yaml:"name"`
			} `yaml:"secretRef"`
		} `yaml:"envFrom"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
			SubPath   string `yaml:"subPath"`
		} `yaml:"volumeMounts"`
	} `yaml:"containers"`
	Volumes []podVolume `yaml:"volumes"`
}

type podVolume struct {
	Name      string `yaml:"name"`
	ConfigMap *struct {
		Name string `yaml:"name"`
	} `yaml:"configMap"`
	Secret *struct {
		SecretName string `yaml:"secretName"`
		Items      []struct {
			Key  string `yaml:"key"`
			Path string `yaml:"path"`
		} `yaml:"items"`
	} `yaml:"secret"`
	EmptyDir *struct{} `yaml:"emptyDir"`
}

// secretRef is one key of a Secret as a pod sees it; Key "*" is the whole Secret.
type secretRef struct{ Secret, Key string }

// volume returns the pod's volume called name.
func (p podSpec) volume(name string) (podVolume, bool) {
	for _, v := range p.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	return podVolume{}, false
}

// secretKeys lists every Secret key the pod's container can read from its volumes.
func (p podSpec) secretKeys() []secretRef {
	var out []secretRef
	for _, m := range p.Containers[0].VolumeMounts {
		v, ok := p.volume(m.Name)
		if !ok || v.Secret == nil {
			continue
		}
		if len(v.Secret.Items) == 0 {
			out = append(out, secretRef{v.Secret.SecretName, "*"})
		}
		for _, it := range v.Secret.Items {
			out = append(out, secretRef{v.Secret.SecretName, it.Key})
		}
	}
	return out
}

// fileMount says which volume mount holds file in the pod's container (the one at the
// longest prefix of its path), and the path inside it.
func (p podSpec) fileMount(file string) (name, rel string, ok bool) {
	best := ""
	for _, m := range p.Containers[0].VolumeMounts {
		if m.SubPath != "" {
			continue
		}
		r, err := filepath.Rel(m.MountPath, file)
		if err != nil || strings.HasPrefix(r, "..") || len(m.MountPath) <= len(best) {
			continue
		}
		best, rel, name = m.MountPath, r, m.Name
	}
	return name, rel, best != ""
}

// fileSource is the volume of fileMount.
func (p podSpec) fileSource(file string) (podVolume, string, bool) {
	name, rel, ok := p.fileMount(file)
	if !ok {
		return podVolume{}, "", false
	}
	v, ok := p.volume(name)
	return v, rel, ok
}

// secretFile says which Secret key the pod reads at file (a file of a Secret volume, named
// by the item that maps it there or by the key itself).
func (p podSpec) secretFile(t *testing.T, what, file string) secretRef {
	t.Helper()
	v, rel, ok := p.fileSource(file)
	require.True(t, ok, "%s %s is in no volume of the pod", what, file)
	require.NotNil(t, v.Secret, "%s %s is not in a Secret (volume %s)", what, file, v.Name)
	if len(v.Secret.Items) == 0 {
		return secretRef{v.Secret.SecretName, rel}
	}
	for _, it := range v.Secret.Items {
		if it.Path == rel {
			return secretRef{v.Secret.SecretName, it.Key}
		}
	}
	require.Failf(t, "file not projected", "%s %s: Secret %s projects no item at %s", what, file, v.Secret.SecretName, rel)
	return secretRef{}
}

// natsFiles resolves the files of cfg's nats section (nkey seed, CA, client certificate
// and key) to the Secret keys the pod mounts there, and points cfg at placeholder files of
// the right kind in dir (the pod's paths do not exist here), so that Validate, which
// loads them, can run.
func natsFiles(t *testing.T, pod podSpec, cfg *config.Config, dir string, ph placeholders) map[string]secretRef {
	t.Helper()
	out := map[string]secretRef{}
	for _, f := range []struct {
		setting string
		path    *string
		content []byte
	}{
		{"nats.nkey_file", &cfg.NATS.NKeyFile, ph.seed},
		{"nats.tls.ca_file", &cfg.NATS.TLS.CAFile, ph.cert},
		{"nats.tls.cert_file", &cfg.NATS.TLS.CertFile, ph.cert},
		{"nats.tls.key_file", &cfg.NATS.TLS.KeyFile, ph.key},
	} {
		if *f.path == "" {
			continue
		}
		out[f.setting] = pod.secretFile(t, f.setting, *f.path)
		local := filepath.Join(dir, *f.path)
		require.NoError(t, os.MkdirAll(filepath.Dir(local), 0o700))
		require.NoError(t, os.WriteFile(local, f.content, 0o600))
		*f.path = local
	}
	return out
}

// placeholders stand in for the files of Secrets the chart takes by name: a user nkey
// seed, and a self-signed certificate (as CA and as client certificate) with its key.
type placeholders struct{ seed, cert, key []byte }

func newPlaceholders(t *testing.T) placeholders {
	t.Helper()
	kp, err := nkeys.CreateUser()
	require.NoError(t, err)
	seed, err := kp.Seed()
	require.NoError(t, err)
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "helm-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(priv)
	require.NoError(t, err)
	return placeholders{seed: append(seed, '\n'),
		cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})}
}
