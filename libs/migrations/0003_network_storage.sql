-- Network and storage of instances (issue 3): what hostd reports about an instance's interface,
-- and the `pool` IPAM's address range.
ALTER TABLE instances ADD COLUMN IF NOT EXISTS mac text NOT NULL DEFAULT '';
ALTER TABLE instances ADD COLUMN IF NOT EXISTS parent text NOT NULL DEFAULT '';      -- host NIC of its macvlan
ALTER TABLE instances ADD COLUMN IF NOT EXISTS lease_expires timestamptz;            -- DHCP mode; NULL otherwise
ALTER TABLE instances ADD COLUMN IF NOT EXISTS address text NOT NULL DEFAULT '';     -- pool mode: reserved, CIDR form

-- IPAM mode `pool`: one row per address; `instance` is NULL while free.  The primary key and
-- the unique index make "handed out twice" impossible whatever the callers do; allocation
-- takes free rows with FOR UPDATE SKIP LOCKED so concurrent placers do not wait on each other.
CREATE TABLE IF NOT EXISTS ipam_addresses (
    address   inet PRIMARY KEY,
    prefix    smallint NOT NULL,
    instance  text,
    taken_at  timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS ipam_addresses_instance ON ipam_addresses (instance) WHERE instance IS NOT NULL;
CREATE INDEX IF NOT EXISTS ipam_addresses_free ON ipam_addresses (address) WHERE instance IS NULL;
