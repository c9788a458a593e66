-- Orders EndpointsChanged events per app for consumers (higher seq = newer set).
CREATE SEQUENCE IF NOT EXISTS endpoints_seq;
