//! The admin endpoint (issues 3 and 5).
