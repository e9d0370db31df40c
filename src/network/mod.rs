//! Listeners, connections and the network filter manager (issue 3).
