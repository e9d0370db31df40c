//! Envoy v3 YAML configuration: parsing with field paths in every error (issue 3).
