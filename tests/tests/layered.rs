//! The conformance suite on the memory backend under every layer this build
//! has, stacked from settings the way an operator configures them.

persistence_conformance::conformance_tests!(|| async {
    let env = [(
        "TA_PERSISTENCE__LAYERS",
        "timeout,retry,circuit_breaker,recovery_queue,cache",
    )]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let factory = persistence_core::factory::Factory::new();
    let settings = factory.settings_from_sources(None, env).expect("settings");
    factory.open(&settings).await.expect("open").backend
});
