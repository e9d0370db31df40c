//! The per-stream HTTP filter chain (Envoy's `FilterManager`): iterates the decoder filters over
//! the request and the encoder filters over the response, holding headers, body and trailers
//! where a filter stops iteration, and resuming where it continues.
//!
//! Called by the connection manager's `ActiveStream` with every request frame the codec decodes
//! and by the router with every response frame from upstream; delivers what passes the last
//! filter to a [`ChainSink`] (the router on the way in, the codec on the way out).
//! Local replies (Envoy's `sendLocalReply`) are built here and travel the encoder filters.
//!
//! Both directions share one iteration engine, [`Chain`]: a frame is pushed into filter `i`; a
//! filter that stops keeps what it holds in its own [`Entry`] until it continues, and then its
//! held headers, body and trailers are pushed on, in that order, into filter `i + 1`.

use bytes::BytesMut;

use super::filter::{
    ChainSink, FilterCallbacks, FilterDataStatus, FilterHeadersStatus, FilterTrailersStatus,
    HeaderMap, LocalReply, RequestHead, ResponseHead, StreamDecoderFilter, StreamEncoderFilter,
};

/// Envoy's default per-stream buffer limit when the listener sets none
/// (`per_connection_buffer_limit_bytes`, 1 MiB).
pub const DEFAULT_BUFFER_LIMIT: usize = 1024 * 1024;

/// One filter seen as a stage of a chain; implemented for both filter directions so the
/// iteration logic exists once.
pub trait ChainFilter {
    /// The message head this direction carries: `RequestHead` or `ResponseHead`.
    type Head;
    fn headers(
        &mut self,
        h: &mut Self::Head,
        end: bool,
        cb: &mut FilterCallbacks,
    ) -> FilterHeadersStatus;
    fn data(&mut self, d: &mut BytesMut, end: bool, cb: &mut FilterCallbacks) -> FilterDataStatus;
    fn trailers(&mut self, t: &mut HeaderMap, cb: &mut FilterCallbacks) -> FilterTrailersStatus;
    fn destroy(&mut self);
}

impl ChainFilter for Box<dyn StreamDecoderFilter> {
    type Head = RequestHead;
    fn headers(
        &mut self,
        h: &mut RequestHead,
        end: bool,
        cb: &mut FilterCallbacks,
    ) -> FilterHeadersStatus {
        self.decode_headers(h, end, cb)
    }
    fn data(&mut self, d: &mut BytesMut, end: bool, cb: &mut FilterCallbacks) -> FilterDataStatus {
        self.decode_data(d, end, cb)
    }
    fn trailers(&mut self, t: &mut HeaderMap, cb: &mut FilterCallbacks) -> FilterTrailersStatus {
        self.decode_trailers(t, cb)
    }
    fn destroy(&mut self) {
        self.on_destroy()
    }
}

impl ChainFilter for Box<dyn StreamEncoderFilter> {
    type Head = ResponseHead;
    fn headers(
        &mut self,
        h: &mut ResponseHead,
        end: bool,
        cb: &mut FilterCallbacks,
    ) -> FilterHeadersStatus {
        self.encode_headers(h, end, cb)
    }
    fn data(&mut self, d: &mut BytesMut, end: bool, cb: &mut FilterCallbacks) -> FilterDataStatus {
        self.encode_data(d, end, cb)
    }
    fn trailers(&mut self, t: &mut HeaderMap, cb: &mut FilterCallbacks) -> FilterTrailersStatus {
        self.encode_trailers(t, cb)
    }
    fn destroy(&mut self) {
        self.on_destroy()
    }
}

/// Why a filter is holding frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// Iterating: frames pass through this filter.
    None,
    /// It returned StopIteration from headers/trailers, or a data Stop: it still gets each new
    /// frame, and whatever it returns Continue on releases what it holds.
    Single,
    /// It returned StopAllIterationAndBuffer: new body is buffered without calling it, until
    /// `continue_iteration`.
    All,
}

/// One filter and what it holds while stopped.
struct Entry<F> {
    filter: F,
    stop: Stop,
    /// It has the headers and has not passed them on.
    holds_headers: bool,
    /// It has the trailers and has not passed them on.
    holds_trailers: bool,
    /// Body it buffered (StopIterationAndBuffer / StopAll), not yet passed on.
    buffer: BytesMut,
    /// The buffered body ends the stream (no trailers follow).
    buffer_end: bool,
}

/// How a push through the chain ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainOutcome {
    /// The frame reached the sink or is held by a filter; nothing for the caller to do.
    Ok,
    /// A filter asked for a local reply (it is in the callbacks' state); iteration has ended.
    LocalReply,
    /// Buffered body went past the buffer limit (413 on a request, 500 on a response).
    BufferOverflow,
}

/// After each filter call: a local reply ends iteration; so does an abort.
fn check(aborted: &mut bool, cb: &FilterCallbacks) -> Option<ChainOutcome> {
    if cb.state.local_reply.is_some() {
        *aborted = true;
        return Some(ChainOutcome::LocalReply);
    }
    if *aborted {
        return Some(ChainOutcome::Ok);
    }
    None
}

/// The iteration engine for one direction of one stream.
pub struct Chain<F: ChainFilter> {
    entries: Vec<Entry<F>>,
    /// The message's head and trailers: owned here so a stop can hold them without copying
    /// (`None` until the head arrives).
    pub headers: Option<F::Head>,
    pub trailers: Option<HeaderMap>,
    /// `end_stream` as the headers arrived (no body, no trailers).
    headers_end: bool,
    /// The sink has seen the end of the stream.
    pub complete: bool,
    /// The sink has seen the headers.
    pub headers_delivered: bool,
    buffer_limit: usize,
    /// Iteration was ended by a local reply or a reset; nothing more passes.
    aborted: bool,
}

impl<F: ChainFilter> Chain<F> {
    pub fn new(filters: Vec<F>, buffer_limit: usize) -> Self {
        Chain {
            entries: filters
                .into_iter()
                .map(|filter| Entry {
                    filter,
                    stop: Stop::None,
                    holds_headers: false,
                    holds_trailers: false,
                    buffer: BytesMut::new(),
                    buffer_end: false,
                })
                .collect(),
            headers: None,
            trailers: None,
            headers_end: false,
            complete: false,
            headers_delivered: false,
            buffer_limit,
            aborted: false,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Ends iteration: nothing more reaches a filter or the sink (after a local reply or reset).
    pub fn abort(&mut self) {
        self.aborted = true;
    }

    pub fn aborted(&self) -> bool {
        self.aborted
    }

    /// Bytes held by stopped filters.
    pub fn buffered_bytes(&self) -> usize {
        self.entries.iter().map(|e| e.buffer.len()).sum()
    }

    /// A new message starts: `headers` enter the first filter.
    pub fn push_headers(
        &mut self,
        headers: F::Head,
        end_stream: bool,
        sink: &mut dyn ChainSink<F::Head>,
        cb: &mut FilterCallbacks,
    ) -> ChainOutcome {
        self.headers = Some(headers);
        self.headers_end = end_stream;
        self.headers_from(0, sink, cb)
    }

    /// A body chunk enters the first filter.
    pub fn push_data(
        &mut self,
        data: &mut BytesMut,
        end_stream: bool,
        sink: &mut dyn ChainSink<F::Head>,
        cb: &mut FilterCallbacks,
    ) -> ChainOutcome {
        self.data_from(0, data, end_stream, sink, cb)
    }

    /// Trailers enter the first filter (they end the stream).
    pub fn push_trailers(
        &mut self,
        trailers: HeaderMap,
        sink: &mut dyn ChainSink<F::Head>,
        cb: &mut FilterCallbacks,
    ) -> ChainOutcome {
        self.trailers = Some(trailers);
        self.trailers_from(0, sink, cb)
    }

    /// Resumes iteration at the filter stopped at `index` (Envoy's `continueDecoding` /
    /// `continueEncoding` called by that filter): what it holds moves on.
    pub fn continue_iteration(
        &mut self,
        index: usize,
        sink: &mut dyn ChainSink<F::Head>,
        cb: &mut FilterCallbacks,
    ) -> ChainOutcome {
        if index >= self.entries.len() || self.entries[index].stop == Stop::None {
            return ChainOutcome::Ok;
        }
        self.release(index, sink, cb)
    }

    /// Index of the first filter currently holding frames, if any.
    pub fn stopped_at(&self) -> Option<usize> {
        self.entries.iter().position(|e| e.stop != Stop::None)
    }

    fn check(&mut self, cb: &FilterCallbacks) -> Option<ChainOutcome> {
        check(&mut self.aborted, cb)
    }

    fn headers_from(
        &mut self,
        start: usize,
        sink: &mut dyn ChainSink<F::Head>,
        cb: &mut FilterCallbacks,
    ) -> ChainOutcome {
        let Some(headers) = self.headers.as_mut() else {
            return ChainOutcome::Ok;
        };
        for i in start..self.entries.len() {
            let status = self.entries[i]
                .filter
                .headers(headers, self.headers_end, cb);
            if let Some(outcome) = check(&mut self.aborted, cb) {
                return outcome;
            }
            let entry = &mut self.entries[i];
            match status {
                FilterHeadersStatus::Continue => {}
                FilterHeadersStatus::StopIteration => {
                    entry.stop = Stop::Single;
                    entry.holds_headers = true;
                    return ChainOutcome::Ok;
                }
                FilterHeadersStatus::StopAllIterationAndBuffer => {
                    entry.stop = Stop::All;
                    entry.holds_headers = true;
                    return ChainOutcome::Ok;
                }
            }
        }
        self.headers_delivered = true;
        if self.headers_end {
            self.complete = true;
        }
        sink.on_headers(headers, self.headers_end, cb);
        check(&mut self.aborted, cb).unwrap_or(ChainOutcome::Ok)
    }

    fn data_from(
        &mut self,
        start: usize,
        data: &mut BytesMut,
        end_stream: bool,
        sink: &mut dyn ChainSink<F::Head>,
        cb: &mut FilterCallbacks,
    ) -> ChainOutcome {
        if self.aborted {
            return ChainOutcome::Ok;
        }
        for i in start..self.entries.len() {
            if self.entries[i].stop == Stop::All {
                return self.buffer_at(i, data, end_stream);
            }
            let status = self.entries[i].filter.data(data, end_stream, cb);
            if let Some(outcome) = self.check(cb) {
                return outcome;
            }
            match status {
                FilterDataStatus::Continue if self.entries[i].stop == Stop::None => {}
                FilterDataStatus::Continue => {
                    // It held headers (or earlier body): they go first, with this chunk appended.
                    let outcome = self.buffer_at(i, data, end_stream);
                    if outcome != ChainOutcome::Ok {
                        return outcome;
                    }
                    return self.release(i, sink, cb);
                }
                FilterDataStatus::StopIterationAndBuffer => {
                    self.entries[i].stop = Stop::Single;
                    return self.buffer_at(i, data, end_stream);
                }
                FilterDataStatus::StopIterationNoBuffer => {
                    self.entries[i].stop = Stop::Single;
                    self.entries[i].buffer_end |= end_stream;
                    return ChainOutcome::Ok;
                }
            }
        }
        if end_stream {
            self.complete = true;
        }
        sink.on_data(data, end_stream, cb);
        self.check(cb).unwrap_or(ChainOutcome::Ok)
    }

    fn trailers_from(
        &mut self,
        start: usize,
        sink: &mut dyn ChainSink<F::Head>,
        cb: &mut FilterCallbacks,
    ) -> ChainOutcome {
        if self.aborted {
            return ChainOutcome::Ok;
        }
        let Some(mut trailers) = self.trailers.take() else {
            return ChainOutcome::Ok;
        };
        for i in start..self.entries.len() {
            if self.entries[i].stop == Stop::All {
                self.entries[i].holds_trailers = true;
                self.trailers = Some(trailers);
                return ChainOutcome::Ok;
            }
            let status = self.entries[i].filter.trailers(&mut trailers, cb);
            if let Some(outcome) = self.check(cb) {
                return outcome;
            }
            match status {
                FilterTrailersStatus::Continue if self.entries[i].stop == Stop::None => {}
                FilterTrailersStatus::Continue => {
                    self.entries[i].holds_trailers = true;
                    self.trailers = Some(trailers);
                    return self.release(i, sink, cb);
                }
                FilterTrailersStatus::StopIteration => {
                    self.entries[i].stop = Stop::Single;
                    self.entries[i].holds_trailers = true;
                    self.trailers = Some(trailers);
                    return ChainOutcome::Ok;
                }
            }
        }
        self.complete = true;
        sink.on_trailers(&mut trailers, cb);
        self.trailers = Some(trailers);
        self.check(cb).unwrap_or(ChainOutcome::Ok)
    }

    fn buffer_at(&mut self, i: usize, data: &mut BytesMut, end_stream: bool) -> ChainOutcome {
        let entry = &mut self.entries[i];
        if entry.buffer.is_empty() {
            // Take the chunk's storage instead of copying it.
            entry.buffer = data.split();
        } else {
            entry.buffer.extend_from_slice(data);
            data.clear();
        }
        entry.buffer_end |= end_stream;
        if self.buffered_bytes() > self.buffer_limit {
            self.aborted = true;
            return ChainOutcome::BufferOverflow;
        }
        ChainOutcome::Ok
    }

    /// Filter `i` continues: push on, in order, the headers, body and trailers it held.
    fn release(
        &mut self,
        i: usize,
        sink: &mut dyn ChainSink<F::Head>,
        cb: &mut FilterCallbacks,
    ) -> ChainOutcome {
        let entry = &mut self.entries[i];
        entry.stop = Stop::None;
        let holds_headers = std::mem::take(&mut entry.holds_headers);
        let holds_trailers = std::mem::take(&mut entry.holds_trailers);
        let mut body = std::mem::take(&mut entry.buffer);
        let body_end = std::mem::take(&mut entry.buffer_end);
        if holds_headers {
            let outcome = self.headers_from(i + 1, sink, cb);
            if outcome != ChainOutcome::Ok || self.aborted {
                return outcome;
            }
        }
        if !body.is_empty() || (body_end && !holds_trailers) {
            let outcome = self.data_from(i + 1, &mut body, body_end && !holds_trailers, sink, cb);
            if outcome != ChainOutcome::Ok || self.aborted {
                return outcome;
            }
        }
        if holds_trailers {
            return self.trailers_from(i + 1, sink, cb);
        }
        ChainOutcome::Ok
    }

    /// The stream is going away: every filter's `on_destroy`.
    pub fn destroy(&mut self) {
        for entry in &mut self.entries {
            entry.filter.destroy();
        }
    }
}

/// Builds the response of a local reply (Envoy's `Utility::sendLocalReply`): `:status`,
/// `content-length`, and for a non-empty body `content-type: text/plain`. A HEAD request gets
/// the headers without the body (its content-length still counts it, as Envoy does).
pub fn local_reply_headers(reply: &LocalReply) -> ResponseHead {
    let mut head = ResponseHead::new(reply.status);
    let headers = &mut head.headers;
    if !reply.body.is_empty() {
        headers.insert("content-length", reply.body.len().to_string());
        headers.insert("content-type", "text/plain");
    } else {
        headers.insert("content-length", "0");
    }
    for (name, value) in &reply.headers {
        headers.insert(name, value);
    }
    head
}

/// Both directions of one stream's filters (Envoy's `FilterManager`).
pub struct FilterManager {
    pub decoder: Chain<Box<dyn StreamDecoderFilter>>,
    pub encoder: Chain<Box<dyn StreamEncoderFilter>>,
}

impl FilterManager {
    /// `decoders` in configuration order; `encoders` in configuration order too (they run in
    /// reverse, as in Envoy).
    pub fn new(
        decoders: Vec<Box<dyn StreamDecoderFilter>>,
        mut encoders: Vec<Box<dyn StreamEncoderFilter>>,
        buffer_limit: usize,
    ) -> Self {
        encoders.reverse();
        FilterManager {
            decoder: Chain::new(decoders, buffer_limit),
            encoder: Chain::new(encoders, buffer_limit),
        }
    }

    /// Sends `reply` down the encoder filters to `sink`. Returns false if the response had
    /// already started (the caller must then reset the stream instead, as Envoy does).
    /// `head_request`: the body is omitted.
    pub fn send_local_reply(
        &mut self,
        reply: LocalReply,
        head_request: bool,
        sink: &mut dyn ChainSink<ResponseHead>,
        cb: &mut FilterCallbacks,
    ) -> bool {
        self.decoder.abort();
        if self.encoder.headers_delivered || self.encoder.stopped_at().is_some() {
            return false;
        }
        cb.state.response_code_details = reply.details;
        let headers = local_reply_headers(&reply);
        let body_empty = reply.body.is_empty() || head_request;
        let outcome = self.encoder.push_headers(headers, body_empty, sink, cb);
        if outcome == ChainOutcome::LocalReply {
            // An encoder filter answered the local reply with another one: Envoy sends that
            // second reply straight to the codec, without filters.
            cb.state.local_reply = None;
            return true;
        }
        if !body_empty {
            let mut body = BytesMut::from(reply.body.as_bytes());
            self.encoder.push_data(&mut body, true, sink, cb);
        }
        true
    }

    pub fn destroy(&mut self) {
        self.decoder.destroy();
        self.encoder.destroy();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::filter::StreamFilterState;
    use std::time::Instant;

    /// A sink recording everything that reached the end of the chain.
    #[derive(Default)]
    struct Recorder {
        events: Vec<String>,
    }

    impl Recorder {
        fn data(&mut self, d: &mut BytesMut, end: bool) {
            self.events
                .push(format!("data {} end={end}", String::from_utf8_lossy(d)));
        }
    }

    impl ChainSink<RequestHead> for Recorder {
        fn on_headers(&mut self, h: &mut RequestHead, end: bool, _: &mut FilterCallbacks) {
            self.events.push(format!("headers {} end={end}", h.path()));
        }
        fn on_data(&mut self, d: &mut BytesMut, end: bool, _: &mut FilterCallbacks) {
            self.data(d, end)
        }
        fn on_trailers(&mut self, _: &mut HeaderMap, _: &mut FilterCallbacks) {
            self.events.push("trailers".into());
        }
    }

    impl ChainSink<ResponseHead> for Recorder {
        fn on_headers(&mut self, h: &mut ResponseHead, end: bool, _: &mut FilterCallbacks) {
            self.events.push(format!("headers {} end={end}", h.status));
        }
        fn on_data(&mut self, d: &mut BytesMut, end: bool, _: &mut FilterCallbacks) {
            self.data(d, end)
        }
        fn on_trailers(&mut self, _: &mut HeaderMap, _: &mut FilterCallbacks) {
            self.events.push("trailers".into());
        }
    }

    /// A decoder filter scripted by what it returns.
    struct Scripted {
        on_headers: FilterHeadersStatus,
        /// Returned for data chunks until end_stream, then `on_last_data`.
        on_data: FilterDataStatus,
        on_last_data: FilterDataStatus,
        reply_on_headers: Option<LocalReply>,
        seen: std::rc::Rc<std::cell::RefCell<Vec<String>>>,
    }

    impl StreamDecoderFilter for Scripted {
        fn decode_headers(
            &mut self,
            _: &mut RequestHead,
            _: bool,
            cb: &mut FilterCallbacks,
        ) -> FilterHeadersStatus {
            self.seen.borrow_mut().push("headers".into());
            if let Some(reply) = self.reply_on_headers.take() {
                cb.send_local_reply(reply);
            }
            self.on_headers
        }
        fn decode_data(
            &mut self,
            d: &mut BytesMut,
            end: bool,
            _: &mut FilterCallbacks,
        ) -> FilterDataStatus {
            self.seen
                .borrow_mut()
                .push(format!("data {}", String::from_utf8_lossy(d)));
            if end {
                self.on_last_data
            } else {
                self.on_data
            }
        }
    }

    type Seen = std::rc::Rc<std::cell::RefCell<Vec<String>>>;

    fn scripted(
        h: FilterHeadersStatus,
        d: FilterDataStatus,
        last: FilterDataStatus,
    ) -> (Box<dyn StreamDecoderFilter>, Seen) {
        let seen: Seen = Default::default();
        (
            Box::new(Scripted {
                on_headers: h,
                on_data: d,
                on_last_data: last,
                reply_on_headers: None,
                seen: seen.clone(),
            }),
            seen,
        )
    }

    fn request(path: &str) -> RequestHead {
        RequestHead::new(crate::http::codec::Method::Get, path, "example.com")
    }

    fn cb(state: &mut StreamFilterState) -> FilterCallbacks<'_> {
        FilterCallbacks {
            now: Instant::now(),
            connection_id: 1,
            stream_id: 1,
            state,
        }
    }

    use FilterDataStatus as D;
    use FilterHeadersStatus as H;

    // === all filters continue ===

    #[test]
    fn continuing_filters_pass_every_frame_in_order() {
        let (a, _) = scripted(H::Continue, D::Continue, D::Continue);
        let (b, _) = scripted(H::Continue, D::Continue, D::Continue);
        let mut chain = Chain::new(vec![a, b], 100);
        let mut sink = Recorder::default();
        let mut st = StreamFilterState::default();
        assert_eq!(
            chain.push_headers(request("/x"), false, &mut sink, &mut cb(&mut st)),
            ChainOutcome::Ok
        );
        chain.push_data(
            &mut BytesMut::from("ab"),
            false,
            &mut sink,
            &mut cb(&mut st),
        );
        chain.push_trailers(HeaderMap::new(), &mut sink, &mut cb(&mut st));
        assert_eq!(
            sink.events,
            ["headers /x end=false", "data ab end=false", "trailers"]
        );
        assert!(chain.complete);
    }

    #[test]
    fn headers_only_request_completes_the_chain() {
        let (a, _) = scripted(H::Continue, D::Continue, D::Continue);
        let mut chain = Chain::new(vec![a], 100);
        let mut sink = Recorder::default();
        let mut st = StreamFilterState::default();
        chain.push_headers(request("/"), true, &mut sink, &mut cb(&mut st));
        assert_eq!(sink.events, ["headers / end=true"]);
        assert!(chain.complete && chain.headers_delivered);
    }

    // === a filter stopped on headers ===

    #[test]
    fn stop_iteration_holds_headers_until_data_continues() {
        let (a, seen_a) = scripted(H::StopIteration, D::Continue, D::Continue);
        let (b, seen_b) = scripted(H::Continue, D::Continue, D::Continue);
        let mut chain = Chain::new(vec![a, b], 100);
        let mut sink = Recorder::default();
        let mut st = StreamFilterState::default();
        chain.push_headers(request("/x"), false, &mut sink, &mut cb(&mut st));
        assert!(sink.events.is_empty());
        assert!(seen_b.borrow().is_empty());
        assert_eq!(chain.stopped_at(), Some(0));
        chain.push_data(&mut BytesMut::from("1"), true, &mut sink, &mut cb(&mut st));
        assert_eq!(sink.events, ["headers /x end=false", "data 1 end=true"]);
        assert_eq!(*seen_a.borrow(), ["headers", "data 1"]);
        assert_eq!(*seen_b.borrow(), ["headers", "data 1"]);
    }

    #[test]
    fn stop_all_buffers_body_without_calling_the_filter_until_continued() {
        let (a, seen_a) = scripted(H::StopAllIterationAndBuffer, D::Continue, D::Continue);
        let mut chain = Chain::new(vec![a], 100);
        let mut sink = Recorder::default();
        let mut st = StreamFilterState::default();
        chain.push_headers(request("/x"), false, &mut sink, &mut cb(&mut st));
        chain.push_data(
            &mut BytesMut::from("ab"),
            false,
            &mut sink,
            &mut cb(&mut st),
        );
        chain.push_data(&mut BytesMut::from("cd"), true, &mut sink, &mut cb(&mut st));
        assert_eq!(*seen_a.borrow(), ["headers"]);
        assert!(sink.events.is_empty());
        chain.continue_iteration(0, &mut sink, &mut cb(&mut st));
        assert_eq!(sink.events, ["headers /x end=false", "data abcd end=true"]);
    }

    #[test]
    fn continue_on_a_running_filter_is_a_no_op() {
        let (a, _) = scripted(H::Continue, D::Continue, D::Continue);
        let mut chain = Chain::new(vec![a], 100);
        let mut sink = Recorder::default();
        let mut st = StreamFilterState::default();
        chain.push_headers(request("/x"), true, &mut sink, &mut cb(&mut st));
        chain.continue_iteration(0, &mut sink, &mut cb(&mut st));
        chain.continue_iteration(7, &mut sink, &mut cb(&mut st));
        assert_eq!(sink.events, ["headers /x end=true"]);
    }

    // === a filter buffering the body ===

    #[test]
    fn stop_and_buffer_collects_the_body_and_releases_it_whole() {
        let (a, seen_a) = scripted(H::StopIteration, D::StopIterationAndBuffer, D::Continue);
        let mut chain = Chain::new(vec![a], 100);
        let mut sink = Recorder::default();
        let mut st = StreamFilterState::default();
        chain.push_headers(request("/x"), false, &mut sink, &mut cb(&mut st));
        chain.push_data(
            &mut BytesMut::from("ab"),
            false,
            &mut sink,
            &mut cb(&mut st),
        );
        chain.push_data(&mut BytesMut::from("cd"), true, &mut sink, &mut cb(&mut st));
        assert_eq!(*seen_a.borrow(), ["headers", "data ab", "data cd"]);
        assert_eq!(sink.events, ["headers /x end=false", "data abcd end=true"]);
    }

    #[test]
    fn buffering_past_the_limit_overflows() {
        let (a, _) = scripted(H::StopIteration, D::StopIterationAndBuffer, D::Continue);
        let mut chain = Chain::new(vec![a], 4);
        let mut sink = Recorder::default();
        let mut st = StreamFilterState::default();
        chain.push_headers(request("/x"), false, &mut sink, &mut cb(&mut st));
        let first = chain.push_data(
            &mut BytesMut::from("abcd"),
            false,
            &mut sink,
            &mut cb(&mut st),
        );
        assert_eq!(first, ChainOutcome::Ok);
        let second = chain.push_data(&mut BytesMut::from("e"), false, &mut sink, &mut cb(&mut st));
        assert_eq!(second, ChainOutcome::BufferOverflow);
        assert!(chain.aborted());
        assert!(sink.events.is_empty());
    }

    // === local replies ===

    #[test]
    fn local_reply_from_a_decoder_ends_decoding() {
        let seen: Seen = Default::default();
        let a: Box<dyn StreamDecoderFilter> = Box::new(Scripted {
            on_headers: H::StopIteration,
            on_data: D::Continue,
            on_last_data: D::Continue,
            reply_on_headers: Some(LocalReply::new(
                429,
                "local_rate_limited",
                "local_rate_limited",
            )),
            seen,
        });
        let (b, seen_b) = scripted(H::Continue, D::Continue, D::Continue);
        let mut fm = FilterManager::new(vec![a, b], vec![], 100);
        let mut router = Recorder::default();
        let mut downstream = Recorder::default();
        let mut st = StreamFilterState::default();
        let outcome = fm
            .decoder
            .push_headers(request("/x"), false, &mut router, &mut cb(&mut st));
        assert_eq!(outcome, ChainOutcome::LocalReply);
        let reply = st.local_reply.take().unwrap();
        assert!(fm.send_local_reply(reply, false, &mut downstream, &mut cb(&mut st)));
        fm.decoder.push_data(
            &mut BytesMut::from("late"),
            true,
            &mut router,
            &mut cb(&mut st),
        );
        assert!(router.events.is_empty());
        assert!(seen_b.borrow().is_empty());
        assert_eq!(
            downstream.events,
            ["headers 429 end=false", "data local_rate_limited end=true"]
        );
        assert_eq!(st.response_code_details, "local_rate_limited");
    }

    #[test]
    fn local_reply_to_head_has_no_body_and_empty_body_sets_length_zero() {
        let mut fm = FilterManager::new(vec![], vec![], 100);
        let mut downstream = Recorder::default();
        let mut st = StreamFilterState::default();
        fm.send_local_reply(
            LocalReply::new(503, "no healthy upstream", "x"),
            true,
            &mut downstream,
            &mut cb(&mut st),
        );
        assert_eq!(downstream.events, ["headers 503 end=true"]);
        let h = local_reply_headers(&LocalReply::new(404, "", "route_not_found"));
        assert_eq!(h.headers.get_str("content-length"), Some("0"));
        assert_eq!(h.headers.get_str("content-type"), None);
        let h = local_reply_headers(&LocalReply::new(503, "no healthy upstream", "x"));
        assert_eq!(h.headers.get_str("content-length"), Some("19"));
        assert_eq!(h.headers.get_str("content-type"), Some("text/plain"));
    }

    #[test]
    fn local_reply_after_the_response_started_is_refused() {
        let mut fm = FilterManager::new(vec![], vec![], 100);
        let mut downstream = Recorder::default();
        let mut st = StreamFilterState::default();
        let h = ResponseHead::new(200);
        fm.encoder
            .push_headers(h, false, &mut downstream, &mut cb(&mut st));
        assert!(!fm.send_local_reply(
            LocalReply::new(504, "upstream request timeout", "x"),
            false,
            &mut downstream,
            &mut cb(&mut st)
        ));
        assert_eq!(downstream.events, ["headers 200 end=false"]);
    }
}
