package ingest

// MigrateTo applies the migrations up to version n (tests of upgrades).
var MigrateTo = migrate
