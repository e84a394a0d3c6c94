// Prometheus text exposition (format 0.0.4) of the engine's MetricsSnapshot, for GET /metrics.
//
// Every series is prefixed "brisk_": gauges for the current load (running / waiting requests, KV
// blocks used / total, prefix-cache hit rate), counters ending in _total, and histograms as
// cumulative _bucket{le="..."} series closed by le="+Inf", with _sum and _count. Values are
// written in the shortest form that reads back exactly.
#pragma once
#include <string>

#include "engine/engine.h"

namespace brisk::serve {

std::string prometheus_text(const engine::MetricsSnapshot& m);

}  // namespace brisk::serve
