//! The network filter manager: a connection's ordered read-filter and write-filter lists and
//! their iteration (Envoy's `Network::FilterManagerImpl`: `onContinueReading`, `onWrite`).
//!
//! Owns the filters of one connection. Filter factories add filters when the connection is
//! created (`add_read_filter` / `add_write_filter`); the worker's `ConnectionHandler` drives
//! the iteration: the `impl ConnectionHandler` block below is `onContinueReading` and `onWrite`.
//! They live on the handler because a filter is called with `&mut` access to the whole worker
//! (its [`FilterContext`]): the manager lends the filter out of its slot for the call and puts
//! it back after, so the filter and the rest of the worker are never borrowed twice.

use bytes::BytesMut;

use super::connection::{ConnectionId, State};
use super::connection_handler::{find, ConnectionHandler};
use super::filter::{FilterContext, FilterStatus, ReadFilter, WriteFilter};

/// One read filter and whether `on_new_connection` has run for it (Envoy's
/// `ActiveReadFilter`). `filter` is `None` only while it is lent out for a callback.
pub(crate) struct ActiveReadFilter {
    pub(crate) filter: Option<Box<dyn ReadFilter>>,
    initialized: bool,
}

/// The filters of one connection, in config order.
#[derive(Default)]
#[doc(alias = "FilterManagerImpl")]
pub struct FilterManager {
    /// Envoy calls these `upstream_filters_`; they see bytes coming from the peer.
    pub(crate) read_filters: FilterList<ActiveReadFilter>,
    /// Envoy's `downstream_filters_`; they see bytes written to the peer. Lent out like the
    /// read filters (`None` during their own callback). Rare (no shipped filter chain has
    /// one), so boxed: a connection without write filters pays one null pointer.
    #[allow(clippy::box_collection)]
    pub(crate) write_filters: Option<Box<Vec<LentWriteFilter>>>,
}

/// A write filter in its slot (`None` while lent out for its own callback).
pub(crate) type LentWriteFilter = Option<Box<dyn WriteFilter>>;

/// A filter list that keeps a single filter inline: most connections have exactly one read
/// filter (the HTTP connection manager, tcp_proxy, echo) and no write filter, and a `Vec`
/// would put a 32-byte heap block beside every idle connection for that one filter.
pub(crate) enum FilterList<T> {
    One(T),
    /// None (an empty `Vec` owns no memory) or more than one.
    Many(Vec<T>),
}

impl<T> Default for FilterList<T> {
    fn default() -> Self {
        FilterList::Many(Vec::new())
    }
}

impl<T> FilterList<T> {
    pub(crate) fn len(&self) -> usize {
        match self {
            FilterList::One(_) => 1,
            FilterList::Many(list) => list.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        match self {
            FilterList::One(only) => (index == 0).then_some(only),
            FilterList::Many(list) => list.get_mut(index),
        }
    }

    fn push(&mut self, filter: T) {
        *self = match std::mem::take(self) {
            FilterList::Many(list) if list.is_empty() => FilterList::One(filter),
            FilterList::Many(mut list) => {
                list.push(filter);
                FilterList::Many(list)
            }
            FilterList::One(first) => FilterList::Many(vec![first, filter]),
        };
    }
}

impl FilterManager {
    /// Appends a read filter (Envoy's `addReadFilter`).
    pub fn add_read_filter(&mut self, filter: Box<dyn ReadFilter>) {
        self.read_filters.push(ActiveReadFilter {
            filter: Some(filter),
            initialized: false,
        });
    }

    /// Appends a write filter (Envoy's `addWriteFilter`).
    pub fn add_write_filter(&mut self, filter: Box<dyn WriteFilter>) {
        self.write_filters
            .get_or_insert_with(Default::default)
            .push(Some(filter));
    }

    /// Whether no read filter was added (Envoy closes such a connection: "empty filter chain").
    pub fn is_empty(&self) -> bool {
        self.read_filters.is_empty()
    }
}

impl ConnectionHandler {
    /// Envoy's `FilterManagerImpl::onContinueReading`: runs the read filters of `id` from
    /// `start` over `buf`. Each filter not yet initialized gets `on_new_connection` first;
    /// `on_data` is called when there are bytes or the peer ended the stream. Iteration stops
    /// at a `StopIteration` or once the connection is no longer open.
    pub(crate) fn on_continue_reading(
        &mut self,
        id: ConnectionId,
        start: usize,
        buf: &mut BytesMut,
        end_stream: bool,
    ) {
        let mut index = start;
        loop {
            let Some(active) = find(&mut self.connections, id) else {
                return;
            };
            if active.connection.state() != State::Open {
                return;
            }
            let Some(slot) = active.filter_manager.read_filters.get_mut(index) else {
                return;
            };
            let Some(mut filter) = slot.filter.take() else {
                // Lent out: only possible if a filter's own callback re-entered iteration,
                // which the handler's queueing rules out. Stop rather than skip it.
                log::error!("[{id}] read filter {index} is already running; stopping iteration");
                return;
            };
            let first_call = !slot.initialized;
            slot.initialized = true;

            let mut cx = FilterContext {
                handler: self,
                conn: id,
                filter_index: index,
            };
            let mut status = FilterStatus::Continue;
            if first_call {
                trace!("[{id}] FilterManagerImpl::onNewConnection: read filter {index}");
                status = filter.on_new_connection(&mut cx);
            }
            let still_open = cx.connection().is_some_and(|c| c.state() == State::Open);
            if status == FilterStatus::Continue && still_open && (!buf.is_empty() || end_stream) {
                trace!(
                    "[{id}] FilterManagerImpl::onRead: read filter {index} onData, {} bytes, end_stream {end_stream}",
                    buf.len()
                );
                status = filter.on_data(buf, end_stream, &mut cx);
            }
            self.put_back_read_filter(id, index, filter);
            if status == FilterStatus::StopIteration {
                return;
            }
            index += 1;
        }
    }

    /// Returns a lent read filter to its slot (if the connection still exists).
    pub(crate) fn put_back_read_filter(
        &mut self,
        id: ConnectionId,
        index: usize,
        filter: Box<dyn ReadFilter>,
    ) {
        let slot = find(&mut self.connections, id)
            .and_then(|active| active.filter_manager.read_filters.get_mut(index));
        match slot {
            Some(slot) => {
                // The lend emptied the slot, and nothing fills a lent filter's slot.
                if let Some(unexpected) = slot.filter.replace(filter) {
                    drop_lent_filter(unexpected);
                }
            }
            // The filter's own callback closed its connection and it was reaped meanwhile
            // (never within one dispatch: reaping waits for its end); drop the filter.
            None => drop_lent_filter(filter),
        }
    }

    /// Envoy's `FilterManagerImpl::onWrite`: runs `data` through the write filters of `id`.
    /// Returns `StopIteration` if a filter swallowed the write.
    pub(crate) fn on_write_filters(
        &mut self,
        id: ConnectionId,
        data: &mut BytesMut,
        end_stream: bool,
    ) -> FilterStatus {
        let mut index = 0;
        loop {
            let Some(active) = self.connections.get_mut(id.slot) else {
                return FilterStatus::StopIteration;
            };
            if active.connection.id() != id {
                return FilterStatus::StopIteration;
            }
            let Some(slot) = active
                .filter_manager
                .write_filters
                .as_mut()
                .and_then(|list| list.get_mut(index))
            else {
                return FilterStatus::Continue;
            };
            // A write filter writing to its own connection passes the filters after it only.
            let Some(mut filter) = slot.take() else {
                index += 1;
                continue;
            };
            let mut cx = FilterContext {
                handler: self,
                conn: id,
                filter_index: index,
            };
            let status = filter.on_write(data, end_stream, &mut cx);
            if let Some(active) = self.connections.get_mut(id.slot) {
                if let Some(slot) = active
                    .filter_manager
                    .write_filters
                    .as_mut()
                    .and_then(|list| list.get_mut(index))
                {
                    *slot = Some(filter);
                }
            }
            if status == FilterStatus::StopIteration {
                return status;
            }
            index += 1;
        }
    }
}

/// Drops a read filter that has no slot to go back to (out of line: the drop of a filter is
/// a lot of code, and the request path never drops one here).
#[cold]
fn drop_lent_filter(filter: Box<dyn ReadFilter>) {
    drop(filter);
}
