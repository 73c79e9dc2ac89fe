"""The fleet service: what devices publish, stored in the registry's database (store, ingest),
data per SIM and what it costs (usage, plans), SIM lifecycle in bulk (sims), and the views
(views). docs/fleet.md describes it."""
