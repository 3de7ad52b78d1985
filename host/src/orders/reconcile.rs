//! Reconciliation with upstream: the partner's modules as upstream lists them (read-only),
//! matched to the orders by `remoteid` (the order ID the host sends with every order), then by
//! licence and tariff. It reports:
//!
//! - each `in_doubt` order with its evidence: found upstream (with the service ID) or absent;
//! - each operation in doubt with what upstream shows (the expiry moved, the status changed…);
//! - upstream modules no order knows (sold before this host kept them), which it may import;
//! - orders whose state or expiry differs from upstream's.
//!
//! Applying resolves what the evidence says and records who did it. Run automatically, it
//! applies only what is unambiguous: an in-doubt order found under its own `remoteid` is
//! placed, and every placed module's expiry and upstream status follow upstream's.

use std::collections::{BTreeMap, HashSet};

use serde::Serialize;

use super::lifecycle::Finding;
use super::operation::{Operation, OperationKind, OperationState};
use super::{Amendment, Change, ListFilter, NewOrder, Order, OrderFields, OrderState, placement};
use super::{DeskError, OrderDesk, UpstreamOutcome};
use crate::bindings::orders::{ServiceStatus, UpstreamService};
use crate::convert::{date, order_error_message, panel_query};
use crate::money::Months;
use crate::orders::buy::price_in_list;
use crate::orders::store::MAX_LIST_LIMIT;

/// What to do besides reporting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Resolve what the evidence says: in-doubt orders (found → placed, absent → paid again),
    /// operations in doubt, expiry dates and upstream statuses.
    pub apply: bool,
    /// Import the upstream modules no order knows, as placed orders.
    pub import: bool,
    /// Apply only what is unambiguous (the automatic runs): expiry dates and statuses, and
    /// with `resolve_doubts`, in-doubt orders found under their `remoteid`.
    pub unambiguous_only: bool,
    /// With `unambiguous_only`: also place in-doubt orders found under their `remoteid`.
    pub resolve_doubts: bool,
}

/// A module upstream, as the report shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Service {
    /// Its service ID.
    pub service_id: String,
    /// Its licence, when listed.
    pub licence_id: Option<String>,
    /// Its tariff, when listed.
    pub tariff_id: Option<u64>,
    /// `ordered`, `active`, `suspended`, `deleted` or `unknown`.
    pub status: &'static str,
    /// When it expires, when listed.
    #[serde(with = "crate::dates::iso::option")]
    pub expires_at: Option<time::Date>,
    /// The caller's own ID for it, when listed.
    pub remote_id: Option<String>,
}

impl Service {
    fn from_hook(s: &UpstreamService) -> Service {
        Service {
            service_id: s.service_id.clone(),
            licence_id: s.licence_id.clone(),
            tariff_id: s.tariff_id,
            status: status_name(s.status),
            expires_at: s.expires.as_ref().and_then(date),
            remote_id: s.remote_id.clone(),
        }
    }
}

fn status_name(s: ServiceStatus) -> &'static str {
    match s {
        ServiceStatus::Ordered => "ordered",
        ServiceStatus::Active => "active",
        ServiceStatus::Suspended => "suspended",
        ServiceStatus::Deleted => "deleted",
        ServiceStatus::Unknown => "unknown",
    }
}

/// An in-doubt order and what upstream shows of it.
#[derive(Clone, Debug, Serialize)]
pub struct Doubt {
    /// The order.
    pub order_id: super::OrderId,
    /// The module upstream, when found.
    pub found: Option<Service>,
    /// How it was found: `remoteid`, or `licence and tariff`; or why it counts as absent.
    pub evidence: String,
    /// What was done about it, if anything.
    pub resolved: Option<String>,
}

/// An operation in doubt and what upstream shows.
#[derive(Clone, Debug, Serialize)]
pub struct OperationDoubt {
    /// The operation.
    pub operation: i64,
    /// Its order.
    pub order_id: super::OrderId,
    /// What it did.
    pub kind: OperationKind,
    /// Whether upstream shows it done, not done, or cannot tell.
    pub evidence: String,
    /// What was done about it, if anything.
    pub resolved: Option<String>,
}

/// An order whose record differs from upstream's.
#[derive(Clone, Debug, Serialize)]
pub struct Difference {
    /// The order.
    pub order_id: super::OrderId,
    /// What differs: `status`, `expires_at`, `absent`.
    pub field: &'static str,
    /// The order's value.
    pub ours: String,
    /// Upstream's.
    pub upstream: String,
    /// Whether the order now follows upstream.
    pub updated: bool,
}

/// An upstream module no order knows.
#[derive(Clone, Debug, Serialize)]
pub struct Unknown {
    /// The module upstream.
    pub service: Service,
    /// The order it became, when imported.
    pub imported: Option<super::OrderId>,
    /// Why it was not imported, when asked to.
    pub not_imported: Option<String>,
}

/// What a reconciliation found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// Modules upstream lists.
    pub upstream_services: usize,
    /// In-doubt orders.
    pub in_doubt: Vec<Doubt>,
    /// Operations in doubt.
    pub operations_in_doubt: Vec<OperationDoubt>,
    /// Upstream modules no order knows.
    pub unknown_upstream: Vec<Unknown>,
    /// Orders that differ from upstream.
    pub differences: Vec<Difference>,
}

impl OrderDesk {
    /// Reconciles the orders with upstream's list of the partner's modules; see the
    /// [module documentation](self). `actor` is recorded with every change.
    pub fn reconcile(&self, options: Options, actor: &str) -> Result<Report, DeskError> {
        let services = self.upstream_services()?;
        let mut report = Report {
            upstream_services: services.len(),
            ..Report::default()
        };
        let by_remote: BTreeMap<&str, &UpstreamService> = services
            .iter()
            .filter_map(|s| s.remote_id.as_deref().map(|r| (r, s)))
            .collect();
        let by_service: BTreeMap<&str, &UpstreamService> = services
            .iter()
            .map(|s| (s.service_id.as_str(), s))
            .collect();
        let mut known: HashSet<String> = HashSet::new();
        let mut orders = Vec::new();
        for state in [
            OrderState::Placed,
            OrderState::Suspended,
            OrderState::InDoubt,
            OrderState::Removed,
        ] {
            orders.extend(self.list(&ListFilter {
                state: Some(state),
                limit: MAX_LIST_LIMIT,
                ..ListFilter::default()
            })?);
        }
        for order in &orders {
            if let Some(id) = &order.upstream_service_id {
                known.insert(id.clone());
            }
            if let Some(s) = by_remote.get(order.id.as_str()) {
                known.insert(s.service_id.clone());
            }
        }
        let apply_all = options.apply && !options.unambiguous_only;
        let apply_sure = options.apply || options.unambiguous_only;
        let resolve_sure = apply_all || options.apply || options.resolve_doubts;
        for order in orders.iter().filter(|o| o.state == OrderState::InDoubt) {
            report.in_doubt.push(self.doubt(
                order,
                &services,
                &by_remote,
                &known,
                apply_all,
                resolve_sure,
                actor,
            ));
        }
        for op in self.backend().operations_in(OperationState::InDoubt)? {
            report.operations_in_doubt.push(self.operation_doubt(
                &op,
                &by_service,
                apply_all,
                actor,
            ));
        }
        for order in orders.iter().filter(|o| o.state.is_upstream()) {
            let service = by_remote
                .get(order.id.as_str())
                .or_else(|| {
                    order
                        .upstream_service_id
                        .as_deref()
                        .and_then(|id| by_service.get(id))
                })
                .copied();
            self.differences(order, service, apply_sure, actor, &mut report.differences);
        }
        for service in services.iter().filter(|s| !known.contains(&s.service_id)) {
            if service.status == ServiceStatus::Deleted {
                continue;
            }
            let mut unknown = Unknown {
                service: Service::from_hook(service),
                imported: None,
                not_imported: None,
            };
            if options.import {
                match self.import(service, actor) {
                    Ok(order) => unknown.imported = Some(order.id),
                    Err(why) => unknown.not_imported = Some(why.to_string()),
                }
            }
            report.unknown_upstream.push(unknown);
        }
        Ok(report)
    }

    /// Every module of the partner's account upstream (the plugin's `services`, read-only).
    fn upstream_services(&self) -> Result<Vec<UpstreamService>, DeskError> {
        let active = self.reseller().active();
        if active.config().upstream.url.is_none() {
            return Err(DeskError::Unavailable(
                "no upstream is configured: there is nothing to reconcile with".to_owned(),
            ));
        }
        let (answer, _) = placement::journaled(&active, self.backend(), None, None, |p, g| match p
            .services(g)
        {
            Some((result, usage)) => (result.map(Some), usage),
            None => (Ok(None), Default::default()),
        });
        match answer {
            Ok(Some(Ok(services))) => Ok(services),
            Ok(Some(Err(e))) => Err(DeskError::Upstream {
                outcome: UpstreamOutcome::Refused,
                message: order_error_message(&e),
            }),
            Ok(None) => Err(DeskError::Unavailable(
                "the plugin was built against billing:reseller@0.1.0, which cannot list the \
                 modules upstream"
                    .to_owned(),
            )),
            Err(fault) => Err(DeskError::from_fault(fault)),
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "the reconciliation's shared state"
    )]
    fn doubt(
        &self,
        order: &Order,
        services: &[UpstreamService],
        by_remote: &BTreeMap<&str, &UpstreamService>,
        known: &HashSet<String>,
        apply_all: bool,
        apply_sure: bool,
        actor: &str,
    ) -> Doubt {
        let mut doubt = Doubt {
            order_id: order.id.clone(),
            found: None,
            evidence: String::new(),
            resolved: None,
        };
        if let Some(service) = by_remote.get(order.id.as_str()) {
            doubt.found = Some(Service::from_hook(service));
            doubt.evidence = "found upstream under its remoteid".to_owned();
            if apply_sure {
                doubt.resolved = Some(self.resolve_found(order, service, actor));
            }
            return doubt;
        }
        let candidates: Vec<&UpstreamService> = services
            .iter()
            .filter(|s| {
                s.remote_id.is_none()
                    && !known.contains(&s.service_id)
                    && s.licence_id.as_deref() == Some(order.licence_id.as_str())
                    && s.tariff_id == Some(order.tariff_id)
                    && s.status != ServiceStatus::Deleted
            })
            .collect();
        match candidates.as_slice() {
            [] => {
                doubt.evidence =
                    "absent: no module upstream has its remoteid, or its licence and tariff"
                        .to_owned();
                if apply_all {
                    let change = Change::by(actor)
                        .with_note("reconciliation: absent upstream, so it is ordered again");
                    doubt.resolved = Some(
                        match self.backend().transition(
                            &order.id,
                            OrderState::InDoubt,
                            OrderState::Paid,
                            change,
                        ) {
                            Ok(_) => {
                                self.wake_worker();
                                "queued for placement again".to_owned()
                            }
                            Err(e) => format!("not changed: {e}"),
                        },
                    );
                }
            }
            [service] => {
                doubt.found = Some(Service::from_hook(service));
                doubt.evidence =
                    "found upstream by licence and tariff (without a remoteid)".to_owned();
                if apply_all {
                    doubt.resolved = Some(self.resolve_found(order, service, actor));
                }
            }
            many => {
                doubt.evidence = format!(
                    "ambiguous: {} modules upstream have its licence and tariff",
                    many.len()
                );
            }
        }
        doubt
    }

    fn resolve_found(&self, order: &Order, service: &UpstreamService, actor: &str) -> String {
        let amendment = Amendment {
            expires_on: Some(service.expires.as_ref().and_then(date)),
            upstream_status: Some(Some(status_name(service.status).to_owned())),
            ..Amendment::default()
        };
        let change = Change::by(actor)
            .with_service_id(service.service_id.clone())
            .with_note("reconciliation: found upstream");
        match self.backend().change(
            &order.id,
            OrderState::InDoubt,
            Some(OrderState::Placed),
            &amendment,
            change,
        ) {
            Ok(_) => format!("placed with service {}", service.service_id),
            Err(e) => format!("not changed: {e}"),
        }
    }

    fn operation_doubt(
        &self,
        op: &Operation,
        by_service: &BTreeMap<&str, &UpstreamService>,
        apply: bool,
        actor: &str,
    ) -> OperationDoubt {
        let mut doubt = OperationDoubt {
            operation: op.id,
            order_id: op.order_id.clone(),
            kind: op.kind,
            evidence: String::new(),
            resolved: None,
        };
        let order = match self.get(&op.order_id) {
            Ok(order) => order,
            Err(e) => {
                doubt.evidence = format!("its order cannot be read: {e}");
                return doubt;
            }
        };
        let service = order
            .upstream_service_id
            .as_deref()
            .and_then(|id| by_service.get(id));
        let (finding, evidence) = judge(op, &order, service.copied());
        doubt.evidence = evidence;
        if apply && let Some(finding) = finding {
            doubt.resolved = Some(
                match self.resolve_operation(&op.order_id, op.id, finding, actor) {
                    Ok(p) => format!("settled as {}", p.operation.state),
                    Err(e) => format!("not changed: {e}"),
                },
            );
        }
        doubt
    }

    fn differences(
        &self,
        order: &Order,
        service: Option<&UpstreamService>,
        apply: bool,
        actor: &str,
        out: &mut Vec<Difference>,
    ) {
        let Some(service) = service else {
            out.push(Difference {
                order_id: order.id.clone(),
                field: "absent",
                ours: order.state.to_string(),
                upstream: "not listed".to_owned(),
                updated: false,
            });
            return;
        };
        let status = status_name(service.status);
        let expires = service.expires.as_ref().and_then(date);
        let expected = match order.state {
            OrderState::Placed => ["active", "ordered"].contains(&status),
            OrderState::Suspended => status == "suspended",
            _ => true,
        };
        let mut changed = Amendment::default();
        if !expected {
            out.push(Difference {
                order_id: order.id.clone(),
                field: "status",
                ours: order.state.to_string(),
                upstream: status.to_owned(),
                updated: false,
            });
        }
        if order.upstream_status.as_deref() != Some(status) {
            changed.upstream_status = Some(Some(status.to_owned()));
        }
        if expires.is_some() && expires != order.expires_on {
            out.push(Difference {
                order_id: order.id.clone(),
                field: "expires_at",
                ours: order.expires_on.map(|d| d.to_string()).unwrap_or_default(),
                upstream: expires.map(|d| d.to_string()).unwrap_or_default(),
                updated: apply,
            });
            changed.expires_on = Some(expires);
        }
        if apply && changed != Amendment::default() {
            let change = Change::by(actor).with_note("status sync with upstream");
            if let Err(e) = self
                .backend()
                .amend(&order.id, order.state, &changed, change)
            {
                tracing::warn!(order = %order.id, "status sync: {e}");
            }
        }
    }

    /// Records an upstream module no order knows as a placed order, priced at the partner's
    /// list price for its period (one month).
    fn import(&self, service: &UpstreamService, actor: &str) -> Result<Order, NotImported> {
        let active = self.reseller().active();
        let config = active.config();
        let tariff = service.tariff_id.ok_or(NotImported::NoTariff)?;
        let module = config
            .module_in_any_region(tariff)
            .ok_or(NotImported::NotInCatalogue(tariff))?;
        let licence = service.licence_id.clone().ok_or(NotImported::NoLicence)?;
        let tariff_id = config.tariff_id(module);
        let doc = active
            .export_prices(&panel_query(Some(tariff_id), false))
            .map_err(|e| NotImported::PriceList(e.to_string()))?;
        let price = price_in_list(&doc.body, tariff_id, Months::MONTH)
            .ok_or(NotImported::NoMonthlyPrice)?;
        let new = NewOrder {
            licence_id: licence,
            licence_ip: None,
            tariff_id,
            service_name: module.intname.clone(),
            price,
            period: Months::MONTH,
            autoprolong: false,
            module: None,
            fields: OrderFields::new(),
        };
        let expires = service.expires.as_ref().and_then(date);
        Ok(self
            .backend()
            .import_placed(&new, &service.service_id, expires, actor)?)
    }
}

/// Why an upstream module was not imported as an order.
#[derive(Debug, thiserror::Error)]
enum NotImported {
    #[error("upstream does not say its tariff")]
    NoTariff,
    #[error("tariff {0} is not in the catalogue")]
    NotInCatalogue(u64),
    #[error("upstream does not say its licence")]
    NoLicence,
    #[error("the price list: {0}")]
    PriceList(String),
    #[error("the module has no monthly price in the price list")]
    NoMonthlyPrice,
    #[error(transparent)]
    Store(#[from] super::StoreError),
}

/// What upstream shows about an operation in doubt: a finding when it is plain, and the
/// evidence in words.
fn judge(
    op: &Operation,
    order: &Order,
    service: Option<&UpstreamService>,
) -> (Option<Finding>, String) {
    let Some(service) = service else {
        return match op.kind {
            OperationKind::Remove => (
                Some(Finding::Done(None)),
                "the module is no longer listed upstream: removed".to_owned(),
            ),
            _ => (
                None,
                "the module is not listed upstream: cannot tell".to_owned(),
            ),
        };
    };
    let expires = service.expires.as_ref().and_then(date);
    match (op.kind, service.status) {
        (OperationKind::Remove, ServiceStatus::Deleted) => {
            (Some(Finding::Done(None)), "deleted upstream".to_owned())
        }
        (OperationKind::Remove, _) => (
            Some(Finding::NotDone),
            "still listed upstream, not deleted".to_owned(),
        ),
        (OperationKind::Suspend, ServiceStatus::Suspended)
        | (OperationKind::Resume, ServiceStatus::Active) => (
            Some(Finding::Done(None)),
            format!("upstream shows it {}", status_name(service.status)),
        ),
        (OperationKind::Suspend, ServiceStatus::Active)
        | (OperationKind::Resume, ServiceStatus::Suspended) => (
            Some(Finding::NotDone),
            format!("upstream shows it {}", status_name(service.status)),
        ),
        (OperationKind::Renew, _) => match (order.expires_on, expires) {
            (Some(before), Some(now)) if now > before => (
                Some(Finding::Done(Some(now))),
                format!("the expiry moved from {before} to {now}"),
            ),
            (Some(before), Some(now)) if now == before => (
                Some(Finding::NotDone),
                format!("the expiry is still {before}"),
            ),
            _ => (
                None,
                "the expiry dates cannot tell whether it was renewed".to_owned(),
            ),
        },
        (OperationKind::Rebind, _) => {
            let asked = op.request["licence_id"].as_str();
            match service.licence_id.as_deref() {
                Some(l) if Some(l) == asked => (
                    Some(Finding::Done(None)),
                    format!("upstream shows licence {l}"),
                ),
                Some(l) if l == order.licence_id => (
                    Some(Finding::NotDone),
                    format!("upstream still shows licence {l}"),
                ),
                _ => (None, "upstream does not show the licence".to_owned()),
            }
        }
        _ => (
            None,
            format!(
                "upstream shows it {}: cannot tell",
                status_name(service.status)
            ),
        ),
    }
}
