-- Host ports (issue 4): what listens on each host's own address, from its heartbeat.  The ports
-- its instances hold come from their versions' specs (placer.sql hosts_snapshot).
ALTER TABLE hosts ADD COLUMN IF NOT EXISTS ports_listening integer[] NOT NULL DEFAULT '{}';
