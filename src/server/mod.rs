//! The server: CLI options, main thread, workers (issue 3).
