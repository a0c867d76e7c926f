"""Data files shipped with cryohet (atomic models for the bundled simulation presets)."""
