//! Diesel table definitions, written by hand to match both migration sets
//! (`migrations/postgres`, `migrations/sqlite`). Only types both backends share.

diesel::table! {
    tenants (name) {
        name -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    api_tokens (id) {
        id -> Text,
        tenant -> Nullable<Text>,
        token_hash -> Text,
        description -> Text,
        created_at -> BigInt,
        name -> Text,
        role -> Text,
        expires_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    cas (trust_domain) {
        trust_domain -> Text,
        cert_pem -> Text,
        key_ciphertext -> Binary,
        key_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    control_plane_cas (trust_domain) {
        trust_domain -> Text,
        cert_pem -> Text,
        key_ciphertext -> Binary,
        key_id -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    services (name) {
        name -> Text,
        tenant -> Text,
        cert_ttl_seconds -> BigInt,
        renew_before_seconds -> BigInt,
        key_type -> Text,
        key_mode -> Text,
        stale_after_seconds -> BigInt,
        grace_seconds -> BigInt,
        alert_before_seconds -> BigInt,
        created_at -> BigInt,
        updated_at -> BigInt,
        san_template -> Text,
        webhook_url -> Nullable<Text>,
        webhook_secret_sealed -> Nullable<Binary>,
        webhook_key_id -> Nullable<Text>,
        node_count -> BigInt,
        dns_suffixes -> Nullable<Text>,
        wildcard_names -> Bool,
        ip_ranges -> Nullable<Text>,
    }
}

diesel::table! {
    join_tokens (id) {
        id -> Text,
        service -> Text,
        token_hash -> Text,
        expires_at -> BigInt,
        max_uses -> Integer,
        uses -> Integer,
        created_at -> BigInt,
        replaces_nodes -> Bool,
    }
}

diesel::table! {
    object_sources (service, kind) {
        service -> Text,
        kind -> Text,
        url -> Text,
        policy -> Text,
        interval_seconds -> BigInt,
        grace_seconds -> BigInt,
        next_sync_at -> BigInt,
        synced_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    inventory (service, node_id) {
        service -> Text,
        node_id -> Text,
        listed_at -> BigInt,
    }
}

diesel::table! {
    imported_objects (service, node_id) {
        service -> Text,
        node_id -> Text,
        etags -> Text,
        version -> BigInt,
        imported_at -> BigInt,
    }
}

diesel::table! {
    metadata (service, node_id, key) {
        service -> Text,
        node_id -> Text,
        key -> Text,
        value -> Text,
        source -> Nullable<Text>,
        expires_at -> Nullable<BigInt>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    sources (service, name) {
        service -> Text,
        name -> Text,
        key -> Text,
        scope -> Text,
        url -> Text,
        interval_seconds -> BigInt,
        header_names -> Text,
        headers_sealed -> Binary,
        key_id -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    source_fetches (service, source, node_id) {
        service -> Text,
        source -> Text,
        node_id -> Text,
        next_fetch_at -> BigInt,
        etag -> Nullable<Text>,
        value_hash -> Nullable<Text>,
        last_attempt_at -> Nullable<BigInt>,
        last_success_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        failures -> Integer,
        circuit -> Text,
        alerting -> Bool,
    }
}

diesel::table! {
    nodes (service, node_id) {
        service -> Text,
        node_id -> Text,
        state -> Text,
        identity_serial -> Text,
        prev_identity_serial -> Nullable<Text>,
        identity_not_after -> BigInt,
        enrolled_at -> BigInt,
        last_seen -> Nullable<BigInt>,
        desired_version -> BigInt,
        acked_version -> BigInt,
        cert_not_after -> Nullable<BigInt>,
        desired_hash -> Nullable<Text>,
        acked_hash -> Nullable<Text>,
        acked_at -> Nullable<BigInt>,
        renew_at -> Nullable<BigInt>,
        clock_skew_ms -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        hook_exit_code -> Nullable<Integer>,
        agent_version -> Nullable<Text>,
        desired_at -> Nullable<BigInt>,
        unseen_at -> Nullable<BigInt>,
        held_by -> Nullable<Text>,
        prev_identity_until -> Nullable<BigInt>,
        identity_key -> Nullable<Text>,
    }
}

diesel::table! {
    replicas (id) {
        id -> Text,
        started_at -> BigInt,
        heartbeat_at -> BigInt,
        held -> BigInt,
    }
}

diesel::table! {
    alerts (id) {
        id -> Text,
        service -> Text,
        node_id -> Text,
        reason -> Text,
        state -> Text,
        detail -> Text,
        fired_at -> BigInt,
        resolved_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    bundles (service, node_id) {
        service -> Text,
        node_id -> Text,
        version -> BigInt,
        content_hash -> Text,
        cert_pem -> Text,
        chain_pem -> Text,
        key_sealed -> Nullable<Binary>,
        key_id -> Nullable<Text>,
        not_after -> Nullable<BigInt>,
        csr_required -> Bool,
        metadata -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    rotations (id) {
        id -> Text,
        service -> Text,
        max_in_flight -> Integer,
        state -> Text,
        total -> BigInt,
        created_at -> BigInt,
        finished_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    deliveries (id) {
        id -> Text,
        service -> Text,
        node_id -> Text,
        rotation_id -> Nullable<Text>,
        idempotency_key -> Nullable<Text>,
        state -> Text,
        version -> Nullable<BigInt>,
        error -> Nullable<Text>,
        created_at -> BigInt,
        issued_at -> Nullable<BigInt>,
        finished_at -> Nullable<BigInt>,
    }
}

diesel::table! {
    audit_log (id) {
        id -> BigInt,
        at -> BigInt,
        actor -> Text,
        tenant -> Nullable<Text>,
        action -> Text,
        target -> Text,
        detail -> Text,
    }
}

diesel::table! {
    alert_events (id) {
        id -> Text,
        alert_id -> Text,
        service -> Text,
        payload -> Text,
        created_at -> BigInt,
        attempts -> Integer,
        next_attempt_at -> BigInt,
        lease_until -> Nullable<BigInt>,
        delivered_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
    }
}

diesel::table! {
    revoked_sessions (session_hash) {
        session_hash -> Text,
        expires_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    tenants,
    api_tokens,
    cas,
    control_plane_cas,
    services,
    join_tokens,
    nodes,
    audit_log,
    bundles,
    rotations,
    deliveries,
    alerts,
    alert_events,
    metadata,
    object_sources,
    inventory,
    imported_objects,
    sources,
    source_fetches,
    replicas,
    revoked_sessions
);
