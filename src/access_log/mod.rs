//! Access logs: formatters, filters and file sinks (issue 5).
