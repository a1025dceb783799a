//! Neural-network side of the search (scope; filled by the supernet issue):
//! the once-for-all supernet, fake quantization and training in burn. The only
//! crate that depends on burn, so the simulator builds and tests without it.
