-- The platform's tables as the code before versioned migrations created them (sqlite), for the
-- migration tests: generated from that code's SQLAlchemy tables; do not edit.
CREATE TABLE alphapulse_champions (symbol VARCHAR(32) NOT NULL, cadence VARCHAR(16) NOT NULL, version INTEGER NOT NULL, since DATETIME NOT NULL, PRIMARY KEY (symbol, cadence));
CREATE TABLE alphapulse_model_decisions (id INTEGER NOT NULL, symbol VARCHAR(32) NOT NULL, cadence VARCHAR(16) NOT NULL, version INTEGER, action VARCHAR(16) NOT NULL, previous_champion INTEGER, reason TEXT NOT NULL, "by" VARCHAR(64) NOT NULL, at DATETIME NOT NULL, PRIMARY KEY (id));
CREATE INDEX ix_alphapulse_model_decisions_symbol ON alphapulse_model_decisions (symbol);
CREATE TABLE alphapulse_model_versions (symbol VARCHAR(32) NOT NULL, cadence VARCHAR(16) NOT NULL, version INTEGER NOT NULL, uri TEXT NOT NULL, sha256 VARCHAR(64) NOT NULL, created_at DATETIME NOT NULL, info_json TEXT NOT NULL, PRIMARY KEY (symbol, cadence, version));
CREATE TABLE alphapulse_breaker_events (id INTEGER NOT NULL, name VARCHAR(200) NOT NULL, from_state VARCHAR(16) NOT NULL, to_state VARCHAR(16) NOT NULL, at DOUBLE NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (id));
CREATE INDEX ix_alphapulse_breaker_events_at ON alphapulse_breaker_events (at);
CREATE INDEX ix_alphapulse_breaker_events_name_id ON alphapulse_breaker_events (name, id);
CREATE TABLE alphapulse_breakers (name VARCHAR(200) NOT NULL, state_json TEXT NOT NULL, version INTEGER NOT NULL, updated_at DOUBLE NOT NULL, PRIMARY KEY (name));
CREATE TABLE alphapulse_alert_dedupe ("key" VARCHAR(512) NOT NULL, channel VARCHAR(64) NOT NULL, severity VARCHAR(16) NOT NULL, status VARCHAR(16) NOT NULL, last_sent_at FLOAT, claim_id VARCHAR(32), PRIMARY KEY ("key", channel));
CREATE TABLE alphapulse_alert_history (id INTEGER NOT NULL, at FLOAT NOT NULL, "key" VARCHAR(512) NOT NULL, event VARCHAR(32) NOT NULL, channel VARCHAR(64), severity VARCHAR(16), status VARCHAR(16), title TEXT, detail TEXT, PRIMARY KEY (id));
CREATE INDEX ix_alphapulse_alert_history_key_at ON alphapulse_alert_history ("key", at);
CREATE TABLE alphapulse_alert_open ("key" VARCHAR(512) NOT NULL, severity VARCHAR(16) NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL, source VARCHAR(128) NOT NULL, labels TEXT NOT NULL, first_at FLOAT NOT NULL, last_at FLOAT NOT NULL, inhibited BOOLEAN NOT NULL, PRIMARY KEY ("key"));
CREATE TABLE alphapulse_resource_samples (id INTEGER NOT NULL, at FLOAT NOT NULL, host VARCHAR(255) NOT NULL, cpu_percent FLOAT, memory_percent FLOAT, disk_percent FLOAT, net_recv_bytes_per_s FLOAT, net_sent_bytes_per_s FLOAT, load1 FLOAT, dagster_rss_bytes BIGINT, sample_json TEXT NOT NULL, PRIMARY KEY (id));
CREATE INDEX ix_alphapulse_resource_samples_at ON alphapulse_resource_samples (at);
