-- The registry writes a report batch in one statement without locking its instances first
-- (services/registry/records.py): it reads them, judges the reports, and writes only the rows
-- still as it read them (the same xmin, the row version PostgreSQL gives every update).  When
-- a row changed meanwhile the whole statement must fail, so that nothing of the batch is
-- written: this raises serialization_failure (40001) when its argument is false, and the
-- registry judges the batch again with the rows locked.
CREATE OR REPLACE FUNCTION noops_unchanged_or_fail(ok boolean) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    IF NOT ok THEN
        RAISE EXCEPTION 'rows changed since they were read' USING ERRCODE = 'serialization_failure';
    END IF;
    RETURN ok;
END
$$;
