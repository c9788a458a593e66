-- instances_app (app) is covered by instances_app_created (app, created_at DESC, id DESC), whose
-- leading column serves every `app = ...` / `app = ANY(...)` lookup it served.  Every INSERT and
-- every non-HOT UPDATE of an instance (each report that changes state: `state` is in partial-index
-- predicates, so none is HOT) wrote an entry into both.  Placing 100,000 instances and recording
-- their RUNNING reports: ~20% less time in those statements without it (bench/RESULTS.md,
-- "(b) again, issue 13, second pass").
DROP INDEX IF EXISTS instances_app;
