"""Dashboard: the web UI and REST API for admins and staff, served by the gateway."""
