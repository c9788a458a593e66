-- Where the load balancer serves each named port of an app.  Assigned once (lowest free port of
-- the configured range) and kept, also across deletes, so an app's address never moves.
CREATE TABLE IF NOT EXISTS lb_ports (
    app        text NOT NULL,
    port_name  text NOT NULL,
    bind_host  text NOT NULL,
    port       integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (app, port_name),
    UNIQUE (bind_host, port)
);
