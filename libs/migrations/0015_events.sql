-- Change events (docs/events.md): instance, deployment and host changes announced through the
-- outbox in the transaction that makes them, by PostgreSQL itself.  Triggers rather than code
-- in each writer: instances change in the placer (PENDING), the registry (reports, health), the
-- placer's host-down and the reconciler (LOST); deployments in the placer and the gateway
-- (pause, cancel); hosts in the placer (heartbeats, DOWN) and the gateway (drain, cordon).  One
-- place, as app_failures (0014), and no writer can forget to announce.
--
-- The payloads are libs/messages.py's InstanceEvents, DeploymentEvents and HostEvents (the
-- field names below are theirs; tests/integration/placer/test_change_events.py decodes them
-- strictly); the subjects are libs/subjects.py's instance_events, deployment_events and
-- host_events (noops.<kind>.<app or host>), checked by the same tests.

-- "at" is unix time (the gateway writes RFC 3339): formatting 100,000 timestamps here cost more
-- than the rest of the payload.

-- Instances: one statement-level trigger on instance_events (every transition is recorded
-- there once), so a report batch costs one INSERT ... SELECT, and the rows are grouped: one
-- outbox row per app and statement holding at most 64 changes, in event order.  The reason is
-- cut to 512 characters, so every item (and every /v1 frame) stays small.
-- PENDING is left out: only the placer's commit writes it, and it announces its placements
-- itself (services/placer/outgoing.py instance_events), because JSON built here costs ~4 us an
-- instance, a quarter of the commit of 100,000 placements; msgspec in the placer, a tenth of that.
CREATE OR REPLACE FUNCTION noops_announce_instances() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (subject, msg_id, payload)
    SELECT 'noops.instance.' || app, 'instance:' || min(id),
           convert_to(json_build_object('app', app, 'items', json_agg(item ORDER BY id))::text, 'UTF8')
      FROM (SELECT e.id, i.app,
                   json_build_object('app', i.app, 'instance', e.instance, 'host', i.host, 'state', e.state,
                                     'health', CASE WHEN i.healthy THEN 'healthy'
                                                    WHEN NOT i.healthy THEN 'unhealthy' END,
                                     'ip', i.ip, 'epoch', i.epoch, 'version', i.version, 'desired', i.desired,
                                     'reason', left(e.reason, 512), 'at', extract(epoch FROM e.at)) AS item,
                   (row_number() OVER (PARTITION BY i.app ORDER BY e.id) - 1) / 64 AS chunk
              FROM noops_new_events e JOIN instances i ON i.id = e.instance
             WHERE e.state <> 'PENDING') t
     GROUP BY app, chunk;
    IF FOUND THEN
        PERFORM pg_notify('noops_outbox', '');   -- libs/outbox.py CHANNEL: the relay wakes at commit
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER instance_events_announce AFTER INSERT ON instance_events
    REFERENCING NEW TABLE AS noops_new_events FOR EACH STATEMENT
    EXECUTE FUNCTION noops_announce_instances();

-- Deployments: a row each time one opens or its state or progress moves (one per app and
-- placer commit at most).  Statement-level, like the instances' trigger: the commit of a batch
-- of 1,000 apps opens 1,000 deployments in one statement, and a row-level trigger cost ~0.1 ms
-- each there.
CREATE OR REPLACE FUNCTION noops_deployment_event(d deployments) RETURNS bytea LANGUAGE sql STABLE AS $$
    SELECT convert_to(json_build_object('app', d.app, 'items', json_build_array(json_build_object(
               'app', d.app, 'deployment', d.id, 'version', d.to_version, 'from_version', d.from_version,
               'state', d.state, 'reason', left(d.reason, 512), 'progress', d.progress,
               'at', extract(epoch FROM d.updated_at))))::text, 'UTF8')
$$;

CREATE OR REPLACE FUNCTION noops_announce_deployments() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO outbox (subject, msg_id, payload)
        SELECT 'noops.deployment.' || d.app, 'deployment:' || d.id || ':' || gen_random_uuid(), noops_deployment_event(d)
          FROM noops_new_deployments d ORDER BY d.id;
    ELSE
        INSERT INTO outbox (subject, msg_id, payload)
        SELECT 'noops.deployment.' || d.app, 'deployment:' || d.id || ':' || gen_random_uuid(), noops_deployment_event(d)
          FROM noops_new_deployments d JOIN noops_old_deployments o ON o.id = d.id
         WHERE o.state IS DISTINCT FROM d.state OR o.progress IS DISTINCT FROM d.progress
         ORDER BY d.id;
    END IF;
    IF FOUND THEN
        PERFORM pg_notify('noops_outbox', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER deployments_announce_insert AFTER INSERT ON deployments
    REFERENCING NEW TABLE AS noops_new_deployments FOR EACH STATEMENT
    EXECUTE FUNCTION noops_announce_deployments();
CREATE OR REPLACE TRIGGER deployments_announce_update AFTER UPDATE ON deployments
    REFERENCING OLD TABLE AS noops_old_deployments NEW TABLE AS noops_new_deployments FOR EACH STATEMENT
    EXECUTE FUNCTION noops_announce_deployments();

-- Hosts: a row when one appears or its state, draining or cordoned flag changes.  The WHEN
-- clause keeps every heartbeat (which rewrites state = 'UP') free of the trigger.
CREATE OR REPLACE FUNCTION noops_announce_host() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (subject, msg_id, payload)
    VALUES ('noops.host.' || NEW.id, 'host:' || NEW.id || ':' || gen_random_uuid(),
            convert_to(json_build_object('items', json_build_array(json_build_object(
                'host', NEW.id, 'state', NEW.state, 'draining', NEW.draining, 'cordoned', NEW.cordoned,
                'epoch', NEW.epoch, 'at', extract(epoch FROM clock_timestamp()))))::text, 'UTF8'));
    PERFORM pg_notify('noops_outbox', '');
    RETURN NULL;
END
$$;

CREATE OR REPLACE TRIGGER hosts_announce_insert AFTER INSERT ON hosts FOR EACH ROW
    EXECUTE FUNCTION noops_announce_host();
CREATE OR REPLACE TRIGGER hosts_announce_update AFTER UPDATE OF state, draining, cordoned ON hosts FOR EACH ROW
    WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.draining IS DISTINCT FROM NEW.draining
          OR OLD.cordoned IS DISTINCT FROM NEW.cordoned)
    EXECUTE FUNCTION noops_announce_host();
