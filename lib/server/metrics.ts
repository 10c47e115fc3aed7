// Prometheus text exposition (format 0.0.4), written by hand: the server's own HTTP counters and
// latency histograms measured where the client sees them, beside the model's scheduler stats under
// the names the README gives them.
import type { ServingStats } from '../serving-options.js';

/** A cumulative histogram with fixed upper bounds (seconds). */
class Histogram {
  readonly #bounds: number[];
  readonly #counts: number[];
  #sum = 0;
  #count = 0;
  constructor(bounds: number[]) {
    this.#bounds = bounds;
    this.#counts = bounds.map(() => 0);
  }
  observe(v: number): void {
    this.#sum += v;
    this.#count++;
    for (let i = 0; i < this.#bounds.length; i++) if (v <= this.#bounds[i]!) this.#counts[i]!++;
  }
  render(name: string, help: string): string {
    const lines = [`# HELP ${name} ${help}`, `# TYPE ${name} histogram`];
    this.#bounds.forEach((b, i) => lines.push(`${name}_bucket{le="${b}"} ${this.#counts[i]}`));
    lines.push(`${name}_bucket{le="+Inf"} ${this.#count}`, `${name}_sum ${this.#sum}`, `${name}_count ${this.#count}`);
    return lines.join('\n');
  }
}

const LATENCY_BOUNDS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10, 30, 60];
const ITL_BOUNDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5];

const escapeLabel = (v: string) => v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');

export class ServerMetrics {
  readonly #requests = new Map<string, number>();  // `route\0status` → count
  readonly #ttft = new Histogram(LATENCY_BOUNDS);
  readonly #itl = new Histogram(ITL_BOUNDS);
  readonly #e2e = new Histogram(LATENCY_BOUNDS);
  #promptTokens = 0;
  #cachedTokens = 0;
  #completionTokens = 0;
  #inFlight = 0;
  #disconnects = 0;
  #rejectedFull = 0;
  #backpressure = 0;

  requestStarted(): void { this.#inFlight++; }
  requestEnded(route: string, status: number): void {
    this.#inFlight--;
    const key = `${route}\0${status}`;
    this.#requests.set(key, (this.#requests.get(key) ?? 0) + 1);
  }
  get inFlight(): number { return this.#inFlight; }
  clientDisconnected(): void { this.#disconnects++; }
  queueFull(): void { this.#rejectedFull++; }
  backpressure(): void { this.#backpressure++; }
  timeToFirstToken(seconds: number): void { this.#ttft.observe(seconds); }
  interToken(seconds: number): void { this.#itl.observe(seconds); }
  generationDone(seconds: number, usage: { promptTokens: number; cachedTokens: number; completionTokens: number }): void {
    this.#e2e.observe(seconds);
    this.#promptTokens += usage.promptTokens;
    this.#cachedTokens += usage.cachedTokens;
    this.#completionTokens += usage.completionTokens;
  }

  /** The whole exposition; `stats` is the model's (undefined once it is disposed). */
  render(stats: ServingStats | undefined): string {
    const out: string[] = [];
    const metric = (name: string, type: 'counter' | 'gauge', help: string, value: number) =>
      out.push(`# HELP ${name} ${help}\n# TYPE ${name} ${type}\n${name} ${value}`);
    const reqLines = ['# HELP glm_http_requests_total HTTP requests answered, by route and status.', '# TYPE glm_http_requests_total counter'];
    for (const [key, n] of this.#requests) {
      const [route, status] = key.split('\0') as [string, string];
      reqLines.push(`glm_http_requests_total{route="${escapeLabel(route)}",status="${status}"} ${n}`);
    }
    out.push(reqLines.join('\n'));
    metric('glm_http_requests_in_flight', 'gauge', 'HTTP requests being answered now.', this.#inFlight);
    metric('glm_http_client_disconnects_total', 'counter', 'Generations aborted because the client went away.', this.#disconnects);
    metric('glm_http_queue_full_total', 'counter', 'Requests refused with 429/529 because the model queue was full.', this.#rejectedFull);
    metric('glm_http_stream_backpressure_waits_total', 'counter', 'Stream writes that waited for a slow client to drain its socket.', this.#backpressure);
    metric('glm_http_prompt_tokens_total', 'counter', 'Prompt tokens of finished HTTP generations (cached ones included).', this.#promptTokens);
    metric('glm_http_cached_prompt_tokens_total', 'counter', 'Prompt tokens served from the prefix cache.', this.#cachedTokens);
    metric('glm_http_completion_tokens_total', 'counter', 'Tokens generated for HTTP requests.', this.#completionTokens);
    out.push(this.#ttft.render('glm_http_time_to_first_token_seconds', 'Request received to first generated output, as the server saw it.'));
    out.push(this.#itl.render('glm_http_inter_token_latency_seconds', 'Gap between consecutive streamed outputs of one request.'));
    out.push(this.#e2e.render('glm_http_request_duration_seconds', 'Request received to generation finished.'));
    if (stats) {
      metric('glm_requests_running', 'gauge', 'Requests computing now.', stats.running);
      metric('glm_requests_waiting', 'gauge', 'Requests queued in the scheduler.', stats.waiting);
      metric('glm_kv_pages_total', 'gauge', 'KV pages in the pool.', stats.kvCache.pagesTotal);
      metric('glm_kv_pages_used', 'gauge', 'KV pages held by sessions.', stats.kvCache.pagesUsed);
      metric('glm_kv_pages_cached', 'gauge', 'KV pages kept by the prefix cache (reclaimable).', stats.kvCache.pagesCached);
      metric('glm_kv_usage_ratio', 'gauge', 'Fraction of the KV pool held by sessions.',
        stats.kvCache.pagesTotal > 0 ? stats.kvCache.pagesUsed / stats.kvCache.pagesTotal : 0);
      metric('glm_kv_evictions_total', 'counter', 'Cached pages reclaimed for new work.', stats.kvCache.evictions);
      metric('glm_prefix_cache_queries_total', 'counter', 'Prompt tokens looked up in the prefix cache.', stats.prefixCache.queryTokens);
      metric('glm_prefix_cache_hits_total', 'counter', 'Prompt tokens served from the prefix cache.', stats.prefixCache.hitTokens);
      metric('glm_preemptions_total', 'counter', 'Running requests preempted and recomputed.', stats.preemptions);
      metric('glm_prompt_tokens_total', 'counter', 'Prompt tokens computed (cache hits excluded).', stats.promptTokens);
      metric('glm_generation_tokens_total', 'counter', 'Tokens generated.', stats.generationTokens);
      metric('glm_requests_finished_total', 'counter', 'Requests finished.', stats.requestsFinished);
      metric('glm_requests_failed_total', 'counter', 'Requests failed (errors, aborts, disposes).', stats.requestsFailed);
      metric('glm_steps_total', 'counter', 'Forward steps run.', stats.steps);
      // Engine percentiles over a sliding window: gauges with a quantile label (a Prometheus summary
      // would also need a running sum, which the engine does not keep).
      const summary = (name: string, help: string, p: ServingStats['timeToFirstTokenMs']) => {
        out.push([`# HELP ${name} ${help}`, `# TYPE ${name} gauge`,
          ...([['0.5', p.p50], ['0.9', p.p90], ['0.99', p.p99]] as const).map(([q, v]) => `${name}{quantile="${q}"} ${Number.isFinite(v) ? v / 1000 : 'NaN'}`),
        ].join('\n'));
      };
      summary('glm_time_to_first_token_seconds', 'Engine: submission to first token (last 4096 requests).', stats.timeToFirstTokenMs);
      summary('glm_inter_token_latency_seconds', 'Engine: gap between consecutive tokens (last 4096 gaps).', stats.interTokenLatencyMs);
    }
    return out.join('\n') + '\n';
  }
}
