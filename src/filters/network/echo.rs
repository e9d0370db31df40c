//! `envoy.filters.network.echo`: writes back every byte it reads (Envoy's
//! `Extensions::NetworkFilters::Echo::EchoFilter`, the seed walk-through's example filter).
//!
//! Built by [`EchoConfigFactory`] from the registry; its config message is empty.

use std::sync::Arc;

use bytes::BytesMut;

use crate::config::{self, Filter};
use crate::network::filter::{FilterContext, FilterStatus, ReadFilter};
use crate::network::listener::NetworkFilterFactoryCb;

use super::super::{FactoryContext, NamedNetworkFilterConfigFactory};

/// The echo filter: a terminal read filter.
pub struct Echo;

impl ReadFilter for Echo {
    fn on_data(
        &mut self,
        data: &mut BytesMut,
        end_stream: bool,
        cx: &mut FilterContext<'_>,
    ) -> FilterStatus {
        trace!(
            "[{}] echo: got {} bytes, end_stream {end_stream}",
            cx.connection_id(),
            data.len()
        );
        cx.write(data, end_stream);
        FilterStatus::StopIteration
    }
}

/// The registry entry.
pub struct EchoConfigFactory;

impl NamedNetworkFilterConfigFactory for EchoConfigFactory {
    fn name(&self) -> &'static str {
        "envoy.filters.network.echo"
    }
    fn config_type(&self) -> &'static str {
        "envoy.extensions.filters.network.echo.v3.Echo"
    }
    fn create_filter_factory(
        &self,
        filter: &Filter,
        _cx: &FactoryContext<'_>,
    ) -> config::Result<NetworkFilterFactoryCb> {
        filter.config_node().check_fields(&[], &[])?;
        Ok(Arc::new(|fm, _worker| fm.add_read_filter(Box::new(Echo))))
    }
}
