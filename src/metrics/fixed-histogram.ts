import type { Registry } from 'prom-client'

/** One label combination's counts: per-bucket (not cumulative), sum and count. */
interface Series {
  readonly labels: Readonly<Record<string, string>>
  readonly buckets: Float64Array
  sum: number
  count: number
}

/**
 * A Prometheus histogram for the hot path, registered in a prom-client registry and rendered by
 * it exactly as prom-client's own Histogram would be (`_bucket{le=…}` cumulative, `+Inf`, `_sum`,
 * `_count`, in that order per series). prom-client's `labels(…).observe()` builds a labels
 * object, validates it and hashes it into a string key on every observation; here a label
 * combination is looked up by the caller's own key and its series is a typed array. The label
 * values come from the BFF (route templates, methods, status codes, operations, outcomes), never
 * from a raw URL, so the number of series stays bounded.
 */
export class FixedHistogram<Label extends string> {
  readonly name: string
  readonly help: string
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly #bounds: readonly number[]
  readonly #labelNames: readonly Label[]
  readonly #series = new Map<string, Series>()

  constructor (options: { name: string, help: string, labelNames: readonly Label[], buckets: readonly number[], registers: Registry[] }) {
    this.name = options.name
    this.help = options.help
    this.#labelNames = options.labelNames
    this.#bounds = [...options.buckets].sort((a, b) => a - b)
    for (const registry of options.registers) registry.registerMetric(this as never)
  }

  /**
   * Counts `value` for the label combination named `key` (any string unique to it); `values`
   * (in `labelNames` order) is called only the first time a key is seen, so a repeat costs one
   * map lookup and allocates nothing.
   */
  observe (key: string, value: number, values: (key: string) => readonly string[]): void {
    let series = this.#series.get(key)
    if (series === undefined) {
      const given = values(key)
      const labels: Record<string, string> = {}
      this.#labelNames.forEach((name, i) => { labels[name] = given[i] as string })
      series = { labels, buckets: new Float64Array(this.#bounds.length), sum: 0, count: 0 }
      this.#series.set(key, series)
    }
    const bounds = this.#bounds
    for (let i = 0; i < bounds.length; i++) {
      if (value <= (bounds[i] as number)) {
        (series.buckets[i] as number)++
        break
      }
    }
    series.sum += value
    series.count++
  }

  /** The JSON form (`registry.getMetricsAsJSON()`), as prom-client's Histogram gives it: labels merged. */
  get (): { name: string, help: string, type: string, aggregator: string, values: Array<{ labels: Record<string, string | number>, value: number, metricName: string, exemplar: null }> } {
    const rendered = this.getForPromString()
    return {
      ...rendered,
      values: rendered.values.map(({ labels, sharedLabels, value, metricName }) => ({ value, metricName, exemplar: null, labels: { ...labels, ...sharedLabels } }))
    }
  }

  /** What prom-client's registry renders as text (the shape of its Histogram's `getForPromString()`). */
  getForPromString (): { name: string, help: string, type: string, aggregator: string, values: Array<{ labels: Record<string, string | number>, sharedLabels: Readonly<Record<string, string>>, value: number, metricName: string }> } {
    const values = []
    const bucket = `${this.name}_bucket`
    for (const series of this.#series.values()) {
      let cumulative = 0
      for (let i = 0; i < this.#bounds.length; i++) {
        cumulative += series.buckets[i] as number
        values.push({ labels: { le: this.#bounds[i] as number }, sharedLabels: series.labels, value: cumulative, metricName: bucket })
      }
      values.push({ labels: { le: '+Inf' }, sharedLabels: series.labels, value: series.count, metricName: bucket })
      values.push({ labels: {}, sharedLabels: series.labels, value: series.sum, metricName: `${this.name}_sum` })
      values.push({ labels: {}, sharedLabels: series.labels, value: series.count, metricName: `${this.name}_count` })
    }
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values }
  }

  reset (): void {
    this.#series.clear()
  }
}
