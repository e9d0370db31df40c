//! reactor: placeholder; see issue 2.
