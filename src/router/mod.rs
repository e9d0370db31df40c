//! Route table and router filter (issue 4).
