-- Outbox notifications name the kinds written and the writer (libs/outbox.py CHANNEL):
-- "<kind>,<kind>@<application_name>", the application name being the writing service's
-- (libs/db.py: noops-<service>).  A kind several services' relays publish (deploy: the gateway,
-- the registry, the reconciler) is then claimed at once by the writer's relay alone, a kind the
-- writer does not publish by its first owner (libs/natsauth.py relay_owners): every notification
-- used to wake every relay of the kind, and the triggers of migration 0015 (an empty payload)
-- every relay of every kind -- 8 claim transactions, of which 7 found nothing; in a start of 50
-- instances two thirds of all claims came back empty.  Only a hint: a wrong or missing writer
-- costs a claim too many, or a wait for the relays' poll (NOOPS_OUTBOX_POLL_S), never a row.
CREATE OR REPLACE FUNCTION noops_outbox_notify(channel text, kinds text) RETURNS void
LANGUAGE sql VOLATILE AS $$
    SELECT pg_notify(channel, coalesce(kinds, '') || '@' || current_setting('application_name'))
$$;

-- Migration 0015's triggers, each now naming its kind (bodies otherwise unchanged).
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
             WHERE e.state <> 'PENDING' AND e.source <> 'registry') t
     GROUP BY app, chunk;
    IF FOUND THEN
        PERFORM noops_outbox_notify('noops_outbox', 'instance');
    END IF;
    RETURN NULL;
END
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
        PERFORM noops_outbox_notify('noops_outbox', 'deployment');
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION noops_announce_host() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO outbox (subject, msg_id, payload)
    VALUES ('noops.host.' || NEW.id, 'host:' || NEW.id || ':' || gen_random_uuid(),
            convert_to(json_build_object('items', json_build_array(json_build_object(
                'host', NEW.id, 'state', NEW.state, 'draining', NEW.draining, 'cordoned', NEW.cordoned,
                'epoch', NEW.epoch, 'at', extract(epoch FROM clock_timestamp()))))::text, 'UTF8'));
    PERFORM noops_outbox_notify('noops_outbox', 'host');
    RETURN NULL;
END
$$;
