//! Hardware-aware search for Bit Fusion (scope; filled by the search-space,
//! lookup-table and search issues): search spaces as data, the per-layer
//! latency/energy lookup table built by the simulator, the accuracy predictor
//! and the evolutionary search. Depends on `bitfusion-simulator`, never the reverse.
