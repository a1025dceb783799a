//! Pictures of results (scope; filled by the sweep and search issues):
//! Pareto fronts, heatmaps, energy breakdowns and rooflines with plotters.
//! Reads result tables; never simulates.
