//! Broker configuration: Kafka's config names, from a TOML file, then `SLUICE_*`
//! environment variables, then command-line flags, over Kafka's defaults.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use sluice_core::config::BrokerConfig;
use sluice_core::group::MigrationPolicy;

/// Flattens nested TOML tables into Kafka's dotted names, so both
/// `num.partitions = 3` and `"num.partitions" = 3` work.
fn flatten(prefix: &str, value: &toml::Value, out: &mut BTreeMap<String, String>) -> Result<()> {
    match value {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out)?;
            }
        }
        toml::Value::String(s) => {
            out.insert(prefix.to_string(), s.clone());
        }
        toml::Value::Integer(i) => {
            out.insert(prefix.to_string(), i.to_string());
        }
        toml::Value::Boolean(b) => {
            out.insert(prefix.to_string(), b.to_string());
        }
        other => bail!("config '{prefix}': unsupported value {other}"),
    }
    Ok(())
}

/// Reads the settings of a config file: TOML, or Kafka's `server.properties` format
/// (by the `.properties` extension, or when a file without `.toml` is not TOML).
pub fn read_file(path: &Path) -> Result<BTreeMap<String, String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let ext = path.extension().and_then(|e| e.to_str());
    if ext == Some("properties") {
        return Ok(parse_properties(&text));
    }
    let value: toml::Value = match toml::from_str(&text) {
        Ok(v) => v,
        Err(_) if ext != Some("toml") => return Ok(parse_properties(&text)),
        Err(e) => return Err(e).with_context(|| format!("parsing config file {}", path.display())),
    };
    let mut out = BTreeMap::new();
    flatten("", &value, &mut out).with_context(|| format!("in config file {}", path.display()))?;
    Ok(out)
}

/// Java's properties format as Kafka reads `server.properties`: `key=value`,
/// `key: value` or `key value`; `#` and `!` comments; a trailing backslash continues
/// a line; backslash escapes. Later keys win.
pub fn parse_properties(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let mut logical = line.trim_start().to_string();
        if logical.is_empty() || logical.starts_with('#') || logical.starts_with('!') {
            continue;
        }
        while ends_in_continuation(&logical) {
            logical.pop();
            match lines.next() {
                Some(next) => logical.push_str(next.trim_start()),
                None => break,
            }
        }
        let (key, value) = split_property(&logical);
        out.insert(unescape(&key), unescape(value.trim_start()));
    }
    out
}

/// An odd number of trailing backslashes: the last one continues the line.
fn ends_in_continuation(line: &str) -> bool {
    line.chars().rev().take_while(|c| *c == '\\').count() % 2 == 1
}

/// The key (up to an unescaped `=`, `:` or whitespace) and the rest after the
/// separator.
fn split_property(line: &str) -> (String, &str) {
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == '=' || c == ':' || c.is_whitespace() {
            let rest = line[i..].trim_start();
            let rest = if c.is_whitespace() {
                rest.strip_prefix(['=', ':']).unwrap_or(rest)
            } else {
                &rest[1..]
            };
            return (line[..i].to_string(), rest);
        }
    }
    (line.to_string(), "")
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('f') => out.push('\u{c}'),
            Some('u') => {
                let hex: String = chars.by_ref().take(4).collect();
                if let Some(ch) = u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                    out.push(ch);
                }
            }
            Some(other) => out.push(other),
            None => {}
        }
    }
    out
}

/// Kafka broker configs Sluice does not use, and why leaving them unused changes
/// nothing a client relies on. Each is logged once at start as ignored.
const IGNORED: &[(&str, &str)] = &[
    (
        "num.network.threads",
        "Sluice's async runtime sizes its own threads",
    ),
    (
        "num.io.threads",
        "Sluice's async runtime sizes its own threads",
    ),
    (
        "background.threads",
        "Sluice's async runtime sizes its own threads",
    ),
    ("num.replica.fetchers", "Sluice runs a fetcher per leader"),
    (
        "num.recovery.threads.per.data.dir",
        "Sluice recovers logs as it opens them",
    ),
    ("socket.send.buffer.bytes", "the OS sizes socket buffers"),
    ("socket.receive.buffer.bytes", "the OS sizes socket buffers"),
    (
        "replica.socket.receive.buffer.bytes",
        "the OS sizes socket buffers",
    ),
    (
        "queued.max.requests",
        "queued.max.request.bytes bounds waiting requests",
    ),
    (
        "log.flush.interval.messages",
        "every write is fsynced before it is acknowledged",
    ),
    (
        "log.flush.interval.ms",
        "every write is fsynced before it is acknowledged",
    ),
    (
        "log.flush.scheduler.interval.ms",
        "every write is fsynced before it is acknowledged",
    ),
    (
        "log.flush.offset.checkpoint.interval.ms",
        "checkpoints are written as they change",
    ),
    (
        "log.flush.start.offset.checkpoint.interval.ms",
        "checkpoints are written as they change",
    ),
    (
        "offsets.topic.replication.factor",
        "internal topics get min(3, brokers) replicas",
    ),
    (
        "transaction.state.log.replication.factor",
        "internal topics get min(3, brokers) replicas",
    ),
    (
        "transaction.state.log.min.isr",
        "internal topics get min(3, brokers) replicas",
    ),
    (
        "share.coordinator.state.topic.replication.factor",
        "internal topics get min(3, brokers) replicas",
    ),
    (
        "share.coordinator.state.topic.min.isr",
        "internal topics get min(3, brokers) replicas",
    ),
];

/// The config names `build` accepts.
pub const KNOWN: &[&str] = &[
    "node.id",
    "broker.id",
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "log.dir",
    "num.partitions",
    "auto.create.topics.enable",
    "message.max.bytes",
    "socket.request.max.bytes",
    "log.segment.bytes",
    "log.roll.ms",
    "log.roll.hours",
    "log.index.interval.bytes",
    "default.replication.factor",
    "connection.inflight.max",
    "queued.max.request.bytes",
    "connections.max.idle.ms",
    "offsets.retention.minutes",
    "offsets.topic.num.partitions",
    "offsets.topic.segment.bytes",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.initial.rebalance.delay.ms",
    "group.max.size",
    "group.consumer.session.timeout.ms",
    "group.consumer.heartbeat.interval.ms",
    "group.consumer.max.size",
    "group.consumer.migration.policy",
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.client.auth",
    "group.share.session.timeout.ms",
    "group.share.heartbeat.interval.ms",
    "group.share.max.size",
    "group.share.record.lock.duration.ms",
    "group.share.delivery.count.limit",
    "group.share.partition.max.record.locks",
    "group.share.max.share.sessions",
    "share.coordinator.state.topic.num.partitions",
    "offset.metadata.max.bytes",
    "log.cleaner.backoff.ms",
    "log.cleaner.dedupe.buffer.size",
    "log.cleaner.enable",
    "log.cleaner.threads",
    "log.cleaner.io.max.bytes.per.second",
    "log.retention.ms",
    "log.retention.minutes",
    "log.retention.hours",
    "log.retention.bytes",
    "log.retention.check.interval.ms",
    "transaction.state.log.num.partitions",
    "transaction.state.log.segment.bytes",
    "transaction.max.timeout.ms",
    "controller.quorum.voters",
    "broker.rack",
    "broker.session.timeout.ms",
    "broker.heartbeat.interval.ms",
    "replica.lag.time.max.ms",
    "replica.fetch.wait.max.ms",
    "min.insync.replicas",
    "auto.leader.rebalance.enable",
    "leader.imbalance.check.interval.seconds",
    "listener.security.protocol.map",
    "controller.listener.names",
    "process.roles",
    "controller.quorum.bootstrap.servers",
    "unclean.leader.election.enable",
    "metadata.log.dir",
];

/// `SLUICE_NUM_PARTITIONS=3` sets `num.partitions`, like the Kafka images' `KAFKA_*`.
/// Other `SLUICE_*` variables (`SLUICE_LOG`, `SLUICE_BOOTSTRAP`, ...) are not configs.
pub fn from_env(vars: impl Iterator<Item = (String, String)>) -> BTreeMap<String, String> {
    vars.filter_map(|(k, v)| {
        let name = k
            .strip_prefix("SLUICE_")?
            .to_ascii_lowercase()
            .replace('_', ".");
        KNOWN.contains(&name.as_str()).then_some((name, v))
    })
    .collect()
}

/// Splits `PLAINTEXT://host:port` or `host:port` into host and port.
fn host_port(key: &str, value: &str) -> Result<(String, u16)> {
    let addr = value.split(',').next().unwrap_or_default();
    let addr = addr.split_once("://").map_or(addr, |(_, a)| a);
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| anyhow!("config '{key}': '{value}' is not HOST:PORT"))?;
    let port = port
        .parse()
        .map_err(|_| anyhow!("config '{key}': bad port in '{value}'"))?;
    Ok((
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
        port,
    ))
}

fn num<T: std::str::FromStr>(key: &str, value: &str) -> Result<T> {
    value
        .trim()
        .parse()
        .map_err(|_| anyhow!("config '{key}': '{value}' is not a valid number"))
}

fn positive<T: std::str::FromStr + PartialOrd + Default + Copy>(
    key: &str,
    value: &str,
) -> Result<T> {
    let n: T = num(key, value)?;
    if n <= T::default() {
        bail!("config '{key}': must be greater than 0, got '{value}'");
    }
    Ok(n)
}

/// A broker config, and the Kafka configs it leaves unused with the reason (for the
/// operator's log).
pub struct Built {
    pub config: BrokerConfig,
    pub ignored: Vec<String>,
}

/// Kafka's default `listener.security.protocol.map`.
const DEFAULT_PROTOCOL_MAP: &str =
    "PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL";

/// Applies settings in order over the defaults; unused Kafka configs are listed.
pub fn build_noting(layers: &[BTreeMap<String, String>]) -> Result<Built> {
    let mut c = BrokerConfig::default();
    let mut ignored = Vec::new();
    let mut listeners = None;
    let mut advertised = None;
    let mut protocol_map = DEFAULT_PROTOCOL_MAP.to_string();
    let mut controller_names = String::new();
    let mut inter_broker = None;
    let mut data_dirs = None;
    let mut ssl = sluice_core::config::SslConfig::default();
    let mut ssl_given = Vec::new();
    for layer in layers {
        for (key, value) in layer {
            let v = value.as_str();
            if let Some((_, why)) = IGNORED.iter().find(|(k, _)| k == key) {
                ignored.push(format!("{key}={v} is ignored: {why}"));
                continue;
            }
            match key.as_str() {
                "node.id" | "broker.id" => c.node_id = num(key, v)?,
                "listeners" => listeners = Some(v.to_string()),
                "advertised.listeners" => advertised = Some(v.to_string()),
                "listener.security.protocol.map" => protocol_map = v.to_string(),
                "controller.listener.names" => controller_names = v.to_string(),
                "inter.broker.listener.name" => inter_broker = Some(v.trim().to_ascii_uppercase()),
                "ssl.keystore.type" | "ssl.truststore.type" => {
                    if !v.trim().eq_ignore_ascii_case("PEM") {
                        bail!("config '{key}': '{v}' is not served; Sluice reads PEM files only (set {key}=PEM)");
                    }
                    ssl_given.push(key.clone());
                }
                "ssl.keystore.location" => {
                    ssl.keystore_location = v.trim().to_string();
                    ssl_given.push(key.clone());
                }
                "ssl.truststore.location" => {
                    ssl.truststore_location = Some(v.trim().to_string());
                    ssl_given.push(key.clone());
                }
                "ssl.client.auth" => {
                    use sluice_core::config::ClientAuth;
                    ssl.client_auth = match v.trim().to_ascii_lowercase().as_str() {
                        "none" => ClientAuth::None,
                        "requested" => ClientAuth::Requested,
                        "required" => ClientAuth::Required,
                        _ => bail!("config '{key}': '{v}' is not one of none, requested, required"),
                    };
                    ssl_given.push(key.clone());
                }
                "ssl.key.password" | "ssl.keystore.password" | "ssl.truststore.password" => {
                    bail!("config '{key}' is not served: give the private key unencrypted in the PEM keystore (readable by the broker only)");
                }
                "process.roles" => {
                    let roles: Vec<&str> = v.split(',').map(str::trim).collect();
                    if !roles.contains(&"broker")
                        || roles.iter().any(|r| !matches!(*r, "broker" | "controller"))
                    {
                        bail!("config '{key}': '{v}' is not served: every Sluice node is a broker and a metadata voter ('broker,controller')");
                    }
                }
                "controller.quorum.bootstrap.servers" => {
                    if v.split(',').filter(|s| !s.trim().is_empty()).count() > 1 {
                        bail!("config '{key}': dynamic quorums (KIP-853) are not served; list the voters in 'controller.quorum.voters' (id@host:port,...)");
                    }
                    ignored.push(format!("{key}={v} is ignored: one node without 'controller.quorum.voters' is its own quorum"));
                }
                "unclean.leader.election.enable" if v == "false" => {}
                "unclean.leader.election.enable" => {
                    bail!("config '{key}': '{v}' is not served: Sluice never elects a replica outside the ISR")
                }
                "log.dirs" | "log.dir" => data_dirs = Some((key.clone(), v.to_string())),
                "metadata.log.dir" => bail!(
                    "config '{key}': not served; the metadata log lives in raft/ under 'log.dirs'"
                ),
                "num.partitions" => c.num_partitions = positive(key, v)?,
                "auto.create.topics.enable" => {
                    c.auto_create_topics_enable = v
                        .parse()
                        .map_err(|_| anyhow!("config '{key}': '{v}' is not true or false"))?
                }
                "message.max.bytes" => c.message_max_bytes = positive(key, v)?,
                "socket.request.max.bytes" => c.socket_request_max_bytes = positive(key, v)?,
                "log.segment.bytes" => c.log_segment_bytes = positive(key, v)?,
                "log.roll.ms" => c.log_roll_ms = positive(key, v)?,
                "log.roll.hours" => c.log_roll_ms = positive::<u64>(key, v)? * 3_600_000,
                "log.index.interval.bytes" => c.log_index_interval_bytes = positive(key, v)?,
                "default.replication.factor" => c.default_replication_factor = positive(key, v)?,
                "connection.inflight.max" => c.connection_inflight_max = positive(key, v)?,
                "connections.max.idle.ms" => c.connections_max_idle_ms = positive(key, v)?,
                "queued.max.request.bytes" => {
                    c.queued_max_request_bytes = match num::<i64>(key, v)? {
                        -1 => -1,
                        n if n > 0 => n,
                        _ => bail!("config '{key}': '{v}' must be positive, or -1 for no bound"),
                    }
                }
                "offsets.retention.minutes" => c.offsets_retention_minutes = positive(key, v)?,
                "offsets.topic.num.partitions" => {
                    c.offsets_topic_num_partitions = positive(key, v)?
                }
                "offsets.topic.segment.bytes" => c.offsets_topic_segment_bytes = positive(key, v)?,
                "group.min.session.timeout.ms" => {
                    c.group_min_session_timeout_ms = positive(key, v)?
                }
                "group.max.session.timeout.ms" => {
                    c.group_max_session_timeout_ms = positive(key, v)?
                }
                "group.initial.rebalance.delay.ms" => {
                    c.group_initial_rebalance_delay_ms = num(key, v)?
                }
                "group.max.size" => c.group_max_size = positive(key, v)?,
                "group.consumer.session.timeout.ms" => {
                    c.group_consumer_session_timeout_ms = positive(key, v)?
                }
                "group.consumer.heartbeat.interval.ms" => {
                    c.group_consumer_heartbeat_interval_ms = positive(key, v)?
                }
                "group.consumer.max.size" => c.group_consumer_max_size = positive(key, v)?,
                "group.consumer.migration.policy" => {
                    c.group_consumer_migration_policy = MigrationPolicy::parse(v.trim())
                        .ok_or_else(|| {
                            anyhow!(
                                "config '{key}': '{v}' is not one of {}",
                                MigrationPolicy::NAMES.join(", ")
                            )
                        })?
                }
                "group.share.session.timeout.ms" => {
                    c.group_share_session_timeout_ms = positive(key, v)?
                }
                "group.share.heartbeat.interval.ms" => {
                    c.group_share_heartbeat_interval_ms = positive(key, v)?
                }
                "group.share.max.size" => c.group_share_max_size = positive(key, v)?,
                "group.share.record.lock.duration.ms" => {
                    c.group_share_record_lock_duration_ms = positive(key, v)?
                }
                "group.share.delivery.count.limit" => {
                    c.group_share_delivery_count_limit = positive(key, v)?
                }
                "group.share.partition.max.record.locks" => {
                    c.group_share_partition_max_record_locks = positive(key, v)?
                }
                "group.share.max.share.sessions" => {
                    c.group_share_max_share_sessions = positive(key, v)?
                }
                "share.coordinator.state.topic.num.partitions" => {
                    c.share_coordinator_state_topic_num_partitions = positive(key, v)?
                }
                "offset.metadata.max.bytes" => c.offset_metadata_max_bytes = positive(key, v)?,
                "log.cleaner.backoff.ms" => c.log_cleaner_backoff_ms = positive(key, v)?,
                "log.cleaner.enable" => {
                    c.log_cleaner_enable = v
                        .parse()
                        .map_err(|_| anyhow!("config '{key}': '{v}' is not true or false"))?
                }
                "log.cleaner.dedupe.buffer.size" => {
                    c.log_cleaner_dedupe_buffer_size = positive(key, v)?
                }
                "log.cleaner.threads" => c.log_cleaner_threads = positive(key, v)?,
                "log.cleaner.io.max.bytes.per.second" => {
                    // A double in Kafka (1.7976931348623157E308 by default).
                    let rate: f64 = positive(key, v)?;
                    if rate.is_nan() {
                        bail!("config '{key}': not a number: '{v}'");
                    }
                    c.log_cleaner_io_max_bytes_per_second = if rate >= u64::MAX as f64 {
                        u64::MAX
                    } else {
                        (rate.ceil() as u64).max(1)
                    }
                }
                "log.retention.ms" => c.log_retention_ms = num(key, v)?,
                "log.retention.minutes" => c.log_retention_ms = num::<i64>(key, v)? * 60_000,
                "log.retention.hours" => c.log_retention_ms = num::<i64>(key, v)? * 3_600_000,
                "log.retention.bytes" => c.log_retention_bytes = num(key, v)?,
                "log.retention.check.interval.ms" => {
                    c.log_retention_check_interval_ms = positive(key, v)?
                }
                "transaction.state.log.num.partitions" => {
                    c.transaction_state_log_num_partitions = positive(key, v)?
                }
                "transaction.state.log.segment.bytes" => {
                    c.transaction_state_log_segment_bytes = positive(key, v)?
                }
                "transaction.max.timeout.ms" => c.transaction_max_timeout_ms = positive(key, v)?,
                "controller.quorum.voters" => {
                    sluice_net::controller::parse_voters(v)
                        .map_err(|e| anyhow!("config '{key}': {e}"))?;
                    c.controller_quorum_voters = v.to_string();
                }
                "broker.rack" => c.broker_rack = Some(v.to_string()),
                "broker.session.timeout.ms" => c.broker_session_timeout_ms = positive(key, v)?,
                "broker.heartbeat.interval.ms" => {
                    c.broker_heartbeat_interval_ms = positive(key, v)?
                }
                "replica.lag.time.max.ms" => c.replica_lag_time_max_ms = positive(key, v)?,
                "replica.fetch.wait.max.ms" => c.replica_fetch_wait_max_ms = positive(key, v)?,
                "min.insync.replicas" => c.min_insync_replicas = positive(key, v)?,
                "auto.leader.rebalance.enable" => {
                    c.auto_leader_rebalance_enable = v
                        .parse()
                        .map_err(|_| anyhow!("config '{key}': '{v}' is not true or false"))?
                }
                "leader.imbalance.check.interval.seconds" => {
                    c.leader_imbalance_check_interval_seconds = positive(key, v)?
                }
                other => bail!(
                    "unknown config '{other}' (see docs/operations.md for the supported names)"
                ),
            }
        }
    }
    if let Some((key, dirs)) = data_dirs {
        let dirs: Vec<&str> = dirs.split(',').map(str::trim).collect();
        if dirs.len() > 1 {
            bail!(
                "config '{key}': several log directories ({}) are not served; give one",
                dirs.join(", ")
            );
        }
        c.data_dir = dirs[0].to_string();
    }
    // The client listeners: the inter-broker one (named, or the first) is the main
    // one, which brokers replicate over; every other one is bound and served too.
    let mut client = match &listeners {
        Some(listeners) => client_listeners(listeners, &protocol_map, &controller_names)?,
        None => vec![("PLAINTEXT".to_string(), String::new(), 0, false)],
    };
    if let Some(name) = &inter_broker {
        let at = client.iter().position(|(n, _, _, _)| n == name).ok_or_else(|| {
            anyhow!("config 'inter.broker.listener.name': {name} is not one of the client listeners")
        })?;
        let main = client.remove(at);
        client.insert(0, main);
    }
    let bind = |host: &str, port: u16| {
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        }
    };
    if client[0].3 {
        bail!(
            "config 'listeners': {} is the inter-broker listener, and replication over SSL is not served yet: name a PLAINTEXT listener in 'inter.broker.listener.name'",
            client[0].0
        );
    }
    if let Some((name, ..)) = client.iter().find(|l| l.3) {
        if ssl.keystore_location.is_empty() {
            bail!("config 'ssl.keystore.location' is required by SSL listener {name} (a PEM file with the certificate chain and private key)");
        }
        if ssl.client_auth != sluice_core::config::ClientAuth::None
            && ssl.truststore_location.is_none()
        {
            bail!("config 'ssl.client.auth' asks for client certificates: 'ssl.truststore.location' must name the PEM CA certificates they chain to");
        }
        c.ssl = Some(ssl);
    } else {
        for key in ssl_given {
            ignored.push(format!("{key} is ignored: no listener is SSL"));
        }
    }
    if listeners.is_some() {
        let (_, host, port, _) = &client[0];
        c.listen = bind(host, *port);
    }
    c.listener_name = client[0].0.clone();
    let advertise = |name: &str, listen: &str| -> Result<(String, u16)> {
        let (listen_host, listen_port) = host_port("listeners", listen)?;
        let local_host = match listen_host.as_str() {
            "127.0.0.1" | "localhost" | "0.0.0.0" | "::" | "" => "localhost".to_string(),
            h => h.to_string(),
        };
        Ok(match &advertised {
            None => (local_host, listen_port),
            Some(list) => {
                let (host, port) = advertised_for(list, name)?;
                (if host.is_empty() { local_host } else { host }, port)
            }
        })
    };
    let (host, port) = advertise(&c.listener_name, &c.listen)?;
    c.advertised_host = host;
    c.advertised_port = port;
    c.extra_listeners = Vec::new();
    for (name, host, port, tls) in client.iter().skip(1) {
        let listen = bind(host, *port);
        let (advertised_host, advertised_port) = advertise(name, &listen)?;
        c.extra_listeners.push(sluice_core::config::ExtraListener {
            name: name.clone(),
            listen,
            advertised_host,
            advertised_port,
            tls: *tls,
        });
    }
    if c.message_max_bytes > c.socket_request_max_bytes {
        bail!(
            "config 'message.max.bytes' ({}) must not exceed 'socket.request.max.bytes' ({})",
            c.message_max_bytes,
            c.socket_request_max_bytes
        );
    }
    if c.group_share_heartbeat_interval_ms >= c.group_share_session_timeout_ms {
        bail!(
            "config 'group.share.heartbeat.interval.ms' ({}) must be below 'group.share.session.timeout.ms' ({})",
            c.group_share_heartbeat_interval_ms,
            c.group_share_session_timeout_ms
        );
    }
    if !(2..=10).contains(&c.group_share_delivery_count_limit) {
        bail!(
            "config 'group.share.delivery.count.limit': {} is outside [2, 10]",
            c.group_share_delivery_count_limit
        );
    }
    if !(1000..=3_600_000).contains(&c.group_share_record_lock_duration_ms) {
        bail!(
            "config 'group.share.record.lock.duration.ms': {} is outside [1000, 3600000]",
            c.group_share_record_lock_duration_ms
        );
    }
    Ok(Built { config: c, ignored })
}

/// One entry of `listeners` or `advertised.listeners`: its name (PLAINTEXT when it
/// has none), host and port.
fn listener_entry(key: &str, entry: &str) -> Result<(String, String, u16)> {
    let (name, _) = entry.split_once("://").unwrap_or(("PLAINTEXT", entry));
    let (host, port) = host_port(key, entry)?;
    Ok((name.trim().to_ascii_uppercase(), host, port))
}

/// The listeners clients connect to: `listeners` without the ones named in
/// `controller.listener.names` (Sluice's metadata quorum listens at this node's
/// `controller.quorum.voters` entry). A protocol other than PLAINTEXT stops the broker
/// at start, as do two listeners of one name.
fn client_listeners(
    listeners: &str,
    protocol_map: &str,
    controller_names: &str,
) -> Result<Vec<(String, String, u16, bool)>> {
    let controllers: Vec<String> = controller_names
        .split(',')
        .map(|n| n.trim().to_ascii_uppercase())
        .collect();
    // (name, host, port, whether it is SSL)
    let mut client: Vec<(String, String, u16, bool)> = Vec::new();
    for entry in listeners
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
    {
        let (name, host, port) = listener_entry("listeners", entry)?;
        if controllers.contains(&name) {
            continue;
        }
        let protocol = protocol_map
            .split(',')
            .filter_map(|m| m.split_once(':'))
            .find(|(n, _)| n.trim().eq_ignore_ascii_case(&name))
            .map(|(_, p)| p.trim().to_ascii_uppercase())
            .ok_or_else(|| {
                anyhow!("config 'listeners': listener {name} has no security protocol in 'listener.security.protocol.map'")
            })?;
        if protocol != "PLAINTEXT" && protocol != "SSL" {
            bail!("config 'listeners': listener '{entry}' uses {protocol}, which is not served yet; Sluice serves PLAINTEXT and SSL listeners");
        }
        if client.iter().any(|(n, ..)| *n == name) {
            bail!("config 'listeners': listener {name} is given twice in '{listeners}'");
        }
        client.push((name, host, port, protocol == "SSL"));
    }
    if client.is_empty() {
        bail!("config 'listeners': '{listeners}' has no listener for clients");
    }
    Ok(client)
}

/// The `advertised.listeners` entry of listener `name` (a list without names
/// advertises its first entry).
fn advertised_for(list: &str, name: &str) -> Result<(String, u16)> {
    let entries: Vec<&str> = list
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    if let [only] = entries.as_slice() {
        if !only.contains("://") {
            return host_port("advertised.listeners", only);
        }
    }
    for entry in entries {
        let (n, host, port) = listener_entry("advertised.listeners", entry)?;
        if n == name {
            return Ok((host, port));
        }
    }
    bail!("config 'advertised.listeners': no entry for listener {name} in '{list}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(layers: &[BTreeMap<String, String>]) -> Result<BrokerConfig> {
        build_noting(layers).map(|built| built.config)
    }

    fn layer(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_kafkas() {
        let c = build(&[]).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9092");
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("localhost", 9092)
        );
        assert_eq!(c.num_partitions, 1);
        assert!(c.auto_create_topics_enable);
        assert_eq!(c.message_max_bytes, 1_048_588);
        assert_eq!(c.socket_request_max_bytes, 104_857_600);
        assert_eq!(c.data_dir, "./data");
    }

    #[test]
    fn later_layers_win_and_bad_values_are_named() {
        let file: toml::Value = toml::from_str(
            "num.partitions = 3\n\"log.dirs\" = \"/x\"\nlisteners = \"PLAINTEXT://0.0.0.0:9999\"",
        )
        .unwrap();
        let mut flat = BTreeMap::new();
        flatten("", &file, &mut flat).unwrap();
        let c = build(&[flat.clone(), layer(&[("num.partitions", "5")])]).unwrap();
        assert_eq!(
            (c.num_partitions, c.data_dir.as_str(), c.listen.as_str()),
            (5, "/x", "0.0.0.0:9999")
        );
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("localhost", 9999)
        );
        let e = build(&[layer(&[("num.partitions", "zero")])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("num.partitions") && e.contains("zero"), "{e}");
        let e = build(&[layer(&[("num.partitons", "2")])])
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown config 'num.partitons'"), "{e}");
        assert!(build(&[layer(&[("num.partitions", "0")])]).is_err());
    }

    #[test]
    fn an_ssl_listener_takes_kafkas_pem_settings() {
        use sluice_core::config::ClientAuth;
        let c = build(&[layer(&[
            ("listeners", "PLAINTEXT://127.0.0.1:9092,SSL://0.0.0.0:9093"),
            ("ssl.keystore.type", "PEM"),
            ("ssl.keystore.location", "/etc/sluice/keystore.pem"),
            ("ssl.truststore.location", "/etc/sluice/ca.pem"),
            ("ssl.client.auth", "REQUIRED"),
        ])])
        .unwrap();
        assert!(c.extra_listeners[0].tls && c.extra_listeners[0].name == "SSL");
        let ssl = c.ssl.unwrap();
        assert_eq!(ssl.keystore_location, "/etc/sluice/keystore.pem");
        assert_eq!(
            ssl.truststore_location.as_deref(),
            Some("/etc/sluice/ca.pem")
        );
        assert_eq!(ssl.client_auth, ClientAuth::Required);
        // ssl.* without an SSL listener is named as unused.
        let built = build_noting(&[layer(&[("ssl.keystore.location", "/k.pem")])]).unwrap();
        assert!(built.config.ssl.is_none());
        assert!(built
            .ignored
            .iter()
            .any(|i| i.contains("ssl.keystore.location")));
    }

    #[test]
    fn the_migration_policy_takes_kafkas_names_in_any_case() {
        use sluice_core::group::MigrationPolicy;
        let policy = |v| {
            build(&[layer(&[("group.consumer.migration.policy", v)])])
                .map(|c| c.group_consumer_migration_policy)
        };
        assert_eq!(
            build(&[]).unwrap().group_consumer_migration_policy,
            MigrationPolicy::Bidirectional
        );
        assert_eq!(policy("UPGRADE").unwrap(), MigrationPolicy::Upgrade);
        assert_eq!(policy("disabled").unwrap(), MigrationPolicy::Disabled);
        let e = policy("sideways").unwrap_err().to_string();
        assert!(
            e.contains("group.consumer.migration.policy") && e.contains("sideways"),
            "{e}"
        );
    }

    #[test]
    fn connection_limits_parse_with_kafkas_defaults() {
        assert_eq!(build(&[]).unwrap().queued_max_request_bytes, 256 << 20);
        let set = |v| build(&[layer(&[("queued.max.request.bytes", v)])]);
        assert_eq!(set("-1").unwrap().queued_max_request_bytes, -1);
        assert_eq!(set("1048576").unwrap().queued_max_request_bytes, 1 << 20);
        let e = set("0").unwrap_err().to_string();
        assert!(
            e.contains("queued.max.request.bytes") && e.contains("-1"),
            "{e}"
        );
        let idle = build(&[layer(&[("connections.max.idle.ms", "1000")])]).unwrap();
        assert_eq!(idle.connections_max_idle_ms, 1000);
        assert_eq!(build(&[]).unwrap().connections_max_idle_ms, 600_000);
    }

    #[test]
    fn log_life_configs_parse_with_kafkas_defaults() {
        let d = build(&[]).unwrap();
        assert!(d.log_cleaner_enable);
        assert_eq!(d.log_cleaner_dedupe_buffer_size, 128 << 20);
        assert_eq!(d.offsets_retention_minutes, 10_080);
        let set = |k, v| build(&[layer(&[(k, v)])]);
        assert!(
            !set("log.cleaner.enable", "false")
                .unwrap()
                .log_cleaner_enable
        );
        let e = set("log.cleaner.enable", "maybe").unwrap_err().to_string();
        assert!(e.contains("log.cleaner.enable"), "{e}");
        let e = set("offsets.retention.minutes", "0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("offsets.retention.minutes"), "{e}");
        let c = set("log.cleaner.io.max.bytes.per.second", "1048576.5").unwrap();
        assert_eq!(c.log_cleaner_io_max_bytes_per_second, 1_048_577);
        let c = set(
            "log.cleaner.io.max.bytes.per.second",
            "1.7976931348623157E308",
        )
        .unwrap();
        assert_eq!(
            c.log_cleaner_io_max_bytes_per_second,
            u64::MAX,
            "Kafka's default"
        );
        assert_eq!(d.log_cleaner_io_max_bytes_per_second, u64::MAX, "no limit");
        for bad in ["0", "-5", "NaN", "fast"] {
            let e = set("log.cleaner.io.max.bytes.per.second", bad)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("log.cleaner.io.max.bytes.per.second"),
                "{bad}: {e}"
            );
        }
        assert_eq!(
            set("log.cleaner.threads", "3").unwrap().log_cleaner_threads,
            3
        );
        assert_eq!(d.log_cleaner_threads, 1);
        let e = set("log.cleaner.threads", "0").unwrap_err().to_string();
        assert!(e.contains("log.cleaner.threads"), "{e}");
    }

    /// A Kafka 4 combined-mode `server.properties` as its quickstart writes one.
    const KAFKA_PROPERTIES: &str = r"
# a comment
! another
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:9093
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,\
    SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes  102400
socket.request.max.bytes=104857600
log.dirs=/tmp/kraft-combined-logs
num.partitions: 3
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
";

    #[test]
    fn kafkas_server_properties_start_a_broker_with_the_unused_keys_named() {
        let props = parse_properties(KAFKA_PROPERTIES);
        assert_eq!(props["num.partitions"], "3");
        assert_eq!(props["socket.receive.buffer.bytes"], "102400");
        assert!(props["listener.security.protocol.map"].ends_with("SASL_SSL:SASL_SSL"));
        let built = build_noting(&[props]).unwrap();
        let c = &built.config;
        assert_eq!(c.listen, "0.0.0.0:9092", "an empty host is every interface");
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("localhost", 9092)
        );
        assert_eq!(
            (c.data_dir.as_str(), c.num_partitions),
            ("/tmp/kraft-combined-logs", 3)
        );
        assert_eq!(c.log_retention_ms, 168 * 3_600_000);
        for key in ["num.io.threads", "offsets.topic.replication.factor"] {
            assert!(
                built
                    .ignored
                    .iter()
                    .any(|n| n.starts_with(&format!("{key}="))),
                "{key} not reported: {:?}",
                built.ignored
            );
        }
        assert_eq!(
            parse_properties("a\\=b = c\\\nd\nkey\\\n  more=x\\u0041"),
            layer(&[("a=b", "cd"), ("keymore", "xA")])
        );
    }

    #[test]
    fn several_plaintext_listeners_are_all_served_each_with_its_advertised_address() {
        let built = build(&[layer(&[
            (
                "listeners",
                "INTERNAL://127.0.0.1:9092,EXTERNAL://0.0.0.0:9094,CONTROLLER://:9093",
            ),
            (
                "listener.security.protocol.map",
                "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
            ),
            ("controller.listener.names", "CONTROLLER"),
            (
                "advertised.listeners",
                "INTERNAL://10.1.1.1:9092,EXTERNAL://broker.example:19094",
            ),
            ("inter.broker.listener.name", "INTERNAL"),
        ])])
        .unwrap();
        assert_eq!(
            (built.listen.as_str(), built.listener_name.as_str()),
            ("127.0.0.1:9092", "INTERNAL")
        );
        assert_eq!(
            (built.advertised_host.as_str(), built.advertised_port),
            ("10.1.1.1", 9092)
        );
        assert_eq!(
            built.extra_listeners,
            vec![sluice_core::config::ExtraListener {
                name: "EXTERNAL".into(),
                listen: "0.0.0.0:9094".into(),
                advertised_host: "broker.example".into(),
                advertised_port: 19094,
                tls: false,
            }]
        );
        // inter.broker.listener.name picks the main listener, wherever it is listed.
        let built = build(&[layer(&[
            ("listeners", "A://127.0.0.1:1,B://127.0.0.1:2"),
            ("listener.security.protocol.map", "A:PLAINTEXT,B:PLAINTEXT"),
            ("inter.broker.listener.name", "B"),
        ])])
        .unwrap();
        assert_eq!(
            (built.listen.as_str(), built.listener_name.as_str()),
            ("127.0.0.1:2", "B")
        );
        assert_eq!(built.extra_listeners[0].name, "A");
    }

    #[test]
    fn what_sluice_cannot_serve_stops_it_at_start_by_name() {
        let refused = |pairs: &[(&str, &str)]| build(&[layer(pairs)]).unwrap_err().to_string();
        // SSL is served on client listeners, not yet between brokers, and needs its
        // keystore.
        let e = refused(&[("listeners", "SSL://127.0.0.1:9093")]);
        assert!(
            e.contains("SSL") && e.contains("inter.broker.listener.name"),
            "{e}"
        );
        let e = refused(&[(
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9093",
        )]);
        assert!(e.contains("ssl.keystore.location"), "{e}");
        let e = refused(&[("ssl.keystore.type", "JKS")]);
        assert!(e.contains("ssl.keystore.type") && e.contains("PEM"), "{e}");
        let e = refused(&[("ssl.key.password", "secret")]);
        assert!(e.contains("ssl.key.password"), "{e}");
        let e = refused(&[
            (
                "listeners",
                "PLAINTEXT://127.0.0.1:9092,SSL://127.0.0.1:9093",
            ),
            ("ssl.keystore.location", "/k.pem"),
            ("ssl.client.auth", "required"),
        ]);
        assert!(e.contains("ssl.truststore.location"), "{e}");
        let e = refused(&[("listeners", "SASL_PLAINTEXT://127.0.0.1:9093")]);
        assert!(e.contains("SASL_PLAINTEXT"), "{e}");
        let e = refused(&[(
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,PLAINTEXT://127.0.0.1:9094",
        )]);
        assert!(e.contains("given twice"), "{e}");
        let e = refused(&[
            ("listeners", "PLAINTEXT://127.0.0.1:9092"),
            ("inter.broker.listener.name", "INTERNAL"),
        ]);
        assert!(e.contains("inter.broker.listener.name"), "{e}");
        let e = refused(&[("listeners", "INTERNAL://127.0.0.1:9092")]);
        assert!(
            e.contains("INTERNAL") && e.contains("listener.security.protocol.map"),
            "{e}"
        );
        let e = refused(&[("log.dirs", "/a,/b")]);
        assert!(e.contains("several log directories"), "{e}");
        let e = refused(&[("unclean.leader.election.enable", "true")]);
        assert!(e.contains("unclean.leader.election.enable"), "{e}");
        let e = refused(&[("process.roles", "controller")]);
        assert!(e.contains("process.roles"), "{e}");
        let e = refused(&[("controller.quorum.bootstrap.servers", "a:1,b:2")]);
        assert!(e.contains("controller.quorum.voters"), "{e}");
        let e = refused(&[
            ("listeners", "PLAINTEXT://:9092"),
            ("advertised.listeners", "EXTERNAL://example:9092"),
        ]);
        assert!(e.contains("no entry for listener PLAINTEXT"), "{e}");
        // A named listener mapped to PLAINTEXT is served, advertised by its name.
        let c = build(&[layer(&[
            ("listeners", "CLIENT://127.0.0.1:9500"),
            ("listener.security.protocol.map", "CLIENT:PLAINTEXT"),
            (
                "advertised.listeners",
                "OTHER://x:1,CLIENT://broker.example:19500",
            ),
        ])])
        .unwrap();
        assert_eq!(c.listen, "127.0.0.1:9500");
        assert_eq!(
            (c.advertised_host.as_str(), c.advertised_port),
            ("broker.example", 19500)
        );
    }

    #[test]
    fn env_names_map_to_dotted_configs() {
        let env = from_env(
            [
                ("SLUICE_NUM_PARTITIONS".to_string(), "4".to_string()),
                ("HOME".into(), "/".into()),
            ]
            .into_iter(),
        );
        assert_eq!(env, layer(&[("num.partitions", "4")]));
    }
}
