package config

import "time"

// Ingest configures JetStream → ClickHouse batching.
type Ingest struct {
	// BatchSize is the JetStream messages fetched per ClickHouse insert (a message holds one
	// or many events). Default 500.
	BatchSize     int           `yaml:"batch_size"`
	FlushInterval time.Duration `yaml:"flush_interval"`
}

func (in *Ingest) applyDefaults() {
	def(&in.BatchSize, 500)
	def(&in.FlushInterval, 200*time.Millisecond)
}

func (in *Ingest) validate(path string, ck *checker) {
	if in.BatchSize < 1 || in.BatchSize > 1000000 {
		ck.add(path+".batch_size", "%d is outside 1..1000000", in.BatchSize)
	}
}
