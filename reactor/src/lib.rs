//! reactor: nuncio's event library, in the image of libevent (API contract; issue 2 fills in the
//! implementation and the design notes).
//!
//! | libevent / Envoy                 | reactor            |
//! |----------------------------------|--------------------|
//! | `event_base` / `DispatcherImpl`  | [`Dispatcher`]     |
//! | `event` on an fd / `FileEventImpl` | [`FileEvent`]    |
//! | `evtimer` / `TimerImpl`          | [`Timer`]          |
//! | `evsignal` / `SignalEventImpl`   | [`SignalEvent`]    |
//! | `Dispatcher::post`               | [`Poster::post`]   |
//! | `Dispatcher::deferredDelete`     | [`Dispatcher::deferred_delete`] |

mod api;
pub use api::*;
