"""Services on what the fleet service committed (issue 15): rules that act exactly once
(rules, engine, dispatch), replenishment of consumables (replenish), technician tickets
(tickets), pay-per-use billing (billing), customers and sites (sites), and the plain-data views
the CLI and the web pages share (views)."""
