//! Who is calling, as a value: resolved once from the client certificate (roles, directory,
//! pin) by [`Hub::identify`], and asked by the core what it may do. Transports pass the
//! certificate's CN and fingerprint in and never decide identity themselves.

use super::{Hub, HubError, Scope};

/// An agency, identified by its OrganId (from its client certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgencyId {
    pub organ_id: String,
}

/// Every kind of caller the hub knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// An agency of the directory: sends, receives, reads its own documents' log entries.
    Agency(AgencyId),
    /// Ops staff (`[roles] ops`): hub-wide statistics.
    Ops,
    /// An auditor (`[roles] auditors`): hub-wide statistics and the whole audit log.
    Auditor,
    /// Another hub of the federation, by its id (`[[peer]]` whose `cert_cn` the certificate
    /// carries): it may only forward packets (`POST /v1/federation/packets`).
    PeerHub(String),
}

impl Principal {
    /// The agency, for operations only agencies may do.
    pub fn agency(&self) -> Result<&AgencyId, HubError> {
        match self {
            Principal::Agency(a) => Ok(a),
            _ => Err(HubError::NotAnAgency),
        }
    }

    /// Who reads the audit log: `None` for an auditor (everything), the agency for an agency
    /// (its own documents); ops staff and peer hubs may not.
    pub fn audit_reader(&self) -> Result<Option<&AgencyId>, HubError> {
        match self {
            Principal::Auditor => Ok(None),
            Principal::Agency(a) => Ok(Some(a)),
            Principal::Ops | Principal::PeerHub(_) => Err(HubError::NotAnAuditor),
        }
    }

    /// Only auditors may export the whole log.
    pub fn may_export_log(&self) -> Result<(), HubError> {
        match self {
            Principal::Auditor => Ok(()),
            _ => Err(HubError::NotAnAuditor),
        }
    }

    /// Which statistics it sees: its own as an agency, the hub's in a role.
    pub fn stats_scope(&self) -> Scope {
        match self {
            Principal::Agency(a) => Scope::Agency(a.organ_id.clone()),
            _ => Scope::Hub,
        }
    }
}

impl Hub {
    /// The principal a client certificate stands for: a role by its CN (`[roles]`), else an
    /// agency of the directory whose pin, if it has one, is this certificate's SHA-256.
    pub fn identify(&self, cn: Option<&str>, cert_sha256: &str) -> Result<Principal, HubError> {
        let cn = cn.ok_or(HubError::NoIdentity)?;
        let roles = &self.settings.roles;
        if roles.auditors.iter().any(|r| r == cn) {
            return Ok(Principal::Auditor);
        }
        if roles.ops.iter().any(|r| r == cn) {
            return Ok(Principal::Ops);
        }
        if let Some(peer) = self.settings.federation.peer_by_cn(cn) {
            return Ok(Principal::PeerHub(peer.id.clone()));
        }
        let dir = self.directory.snapshot();
        let agency = dir
            .get(cn)
            .ok_or_else(|| HubError::UnknownAgency(cn.to_owned()))?;
        if let Some(pin) = &agency.cert_sha256 {
            if !pin.eq_ignore_ascii_case(cert_sha256) {
                return Err(HubError::CertificateNotPinned {
                    agency: cn.to_owned(),
                    presented: cert_sha256.to_owned(),
                });
            }
        }
        Ok(Principal::Agency(AgencyId {
            organ_id: agency.id.clone(),
        }))
    }

    /// A connection opened with this client certificate: when it identifies an agency, its
    /// expiry is remembered for the agency certificate gauge (the directory holds only
    /// fingerprints, so the certificates agencies actually present are what is watched). Once
    /// per connection, off the per-request path; the latest connection's certificate counts.
    pub fn client_certificate_seen(
        &self,
        cn: Option<&str>,
        cert_sha256: &str,
        not_after: Option<std::time::SystemTime>,
    ) {
        let (Some(not_after), Ok(Principal::Agency(a))) =
            (not_after, self.identify(cn, cert_sha256))
        else {
            return;
        };
        let mut seen = self.agency_certificates.lock().expect("certificate map");
        seen.insert(a.organ_id, not_after);
    }
}
