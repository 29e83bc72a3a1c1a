//! Where a webhook may lead: a URL whose host is, or resolves to, a loopback, private,
//! link-local, shared, multicast or metadata address is refused (unless private targets are
//! allowed), once when a subscription is saved and again at every delivery. At delivery the
//! HTTP client resolves names through [`VettedResolver`], which drops forbidden addresses, so
//! the connection goes only to an address that was checked: a name that resolved to a public
//! address when saved and to an internal one later (DNS rebinding) reaches nothing.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::RuleError;
use crate::domain::webhooks::{check_url, is_forbidden_address};

/// The longest a name lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

const FORBIDDEN: &str = "url must not lead to a loopback, private, link-local or metadata address";

/// Check a URL as a subscription is saved: its form, and every address its host resolves to.
pub(super) async fn vet(raw: &str, allow_private: bool) -> Result<(), RuleError> {
    let url = check_url(raw)?;
    if allow_private {
        return Ok(());
    }
    let addresses = match literal_address(&url) {
        Some(address) => vec![address],
        None => {
            let host = url.host_str().unwrap_or_default();
            let port = url.port_or_known_default().unwrap_or(443);
            lookup(host, port)
                .await
                .map_err(|_| RuleError::invalid("url's host does not resolve"))?
                .into_iter()
                .map(|address| address.ip())
                .collect()
        }
    };
    if addresses.is_empty() || addresses.into_iter().any(is_forbidden_address) {
        return Err(RuleError::invalid(FORBIDDEN));
    }
    Ok(())
}

/// Check a URL just before a delivery, for what the resolver does not see: a host given as an
/// address. Answers why it is refused.
pub(super) fn refuse_literal(url: &url::Url, allow_private: bool) -> Option<&'static str> {
    let address = literal_address(url)?;
    (!allow_private && is_forbidden_address(address)).then_some(FORBIDDEN)
}

fn literal_address(url: &url::Url) -> Option<IpAddr> {
    match url.host()? {
        url::Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        url::Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        url::Host::Domain(_) => None,
    }
}

async fn lookup(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let found = tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "lookup timed out"))??;
    Ok(found.collect())
}

/// The delivery client's resolver: the system's answers without the forbidden addresses.
#[derive(Debug, Clone, Copy)]
pub(super) struct VettedResolver {
    pub allow_private: bool,
}

impl Resolve for VettedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let found = lookup(name.as_str(), 0).await?;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|address| allow_private || !is_forbidden_address(address.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(FORBIDDEN.into());
            }
            let addresses: Addrs = Box::new(allowed.into_iter());
            Ok(addresses)
        })
    }
}
