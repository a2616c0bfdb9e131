"""Adapters that speak each provider's tracking format (AfterShip, Karrio, Doorstep's generic JSON and CSV),
and the per-carrier code tables that normalise raw scan codes."""
