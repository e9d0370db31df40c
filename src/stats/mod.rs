//! Stats: counters, gauges, histograms with Envoy names (issues 3 and 5).
