package config

import (
	"bytes"
	"fmt"
	"os"
)

// Proxy configures the protocol proxies.
type Proxy struct {
	Postgres PostgresProxy `yaml:"postgres"`
	// MaskKeyFile holds the secret (at least 32 bytes) that keys the HMAC tokens of the hmac
	// mask method. Without it, hmac masking redacts instead.
	MaskKeyFile string `yaml:"mask_key_file"`
}

// LoadMaskKey reads the mask key file (nil when none is configured).
func (p *Proxy) LoadMaskKey() ([]byte, error) {
	if p.MaskKeyFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(p.MaskKeyFile)
	if err != nil {
		return nil, fmt.Errorf("proxy.mask_key_file: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) < 32 {
		return nil, fmt.Errorf("proxy.mask_key_file: %d bytes; at least 32 are needed", len(b))
	}
	return b, nil
}

func (p *Proxy) applyDefaults() {
	p.Postgres.applyDefaults()
}

func (p *Proxy) validate(path string, ck *checker) {
	p.Postgres.validate(path+".postgres", ck)
}
