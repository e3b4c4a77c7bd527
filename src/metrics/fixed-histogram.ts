import type { Registry } from 'prom-client'

/** One label combination's counts: per-bucket (not cumulative), sum and count. */
interface Series {
  readonly labels: Readonly<Record<string, string>>
  readonly buckets: Float64Array
  sum: number
  count: number
}

/** A label's value as the caller has it: a string, or a number such as a status code. */
export type LabelValue = string | number

/** The series below one label value: the next label's values, or (for the last label) series. */
type Level = Map<LabelValue, Level | Series>

/**
 * A Prometheus histogram for the hot path, registered in a prom-client registry and rendered by
 * it exactly as prom-client's own Histogram would be (`_bucket{le=…}` cumulative, `+Inf`, `_sum`,
 * `_count`, in that order per series). prom-client's `labels(…).observe()` builds a labels
 * object, validates it and hashes it into a string key on every observation. Here a series is
 * found by its label values themselves, one map per label: the values the BFF passes (route
 * templates, methods, operations, outcomes, status codes) are strings made once, whose hash V8
 * keeps, or small integers, so a repeat hashes no text, builds no key and allocates nothing.
 * The label values come from the BFF, never from a raw URL, so the number of series stays
 * bounded. One to three labels.
 */
export class FixedHistogram<Label extends string> {
  readonly name: string
  readonly help: string
  readonly type = 'histogram'
  readonly aggregator = 'sum'
  readonly #bounds: readonly number[]
  readonly #labelNames: readonly Label[]
  readonly #root: Level = new Map()
  /** Every series, in the order first observed: the order prom-client renders them in. */
  readonly #series: Series[] = []

  constructor (options: { name: string, help: string, labelNames: readonly Label[], buckets: readonly number[], registers: Registry[] }) {
    if (options.labelNames.length < 1 || options.labelNames.length > 3) throw new Error('FixedHistogram takes one to three labels')
    this.name = options.name
    this.help = options.help
    this.#labelNames = options.labelNames
    this.#bounds = [...options.buckets].sort((a, b) => a - b)
    for (const registry of options.registers) registry.registerMetric(this as never)
  }

  /**
   * Counts `value` for the series of the given label values, in `labelNames` order. A value is
   * rendered with String(); pass each label's values as the same type every time (a status code
   * as a number, say), since 204 and '204' would find two series with the same labels.
   */
  observe (value: number, a: LabelValue, b?: LabelValue, c?: LabelValue): void {
    const depth = this.#labelNames.length
    let node = this.#root.get(a)
    if (depth > 1 && node !== undefined) node = (node as Level).get(b as LabelValue)
    if (depth > 2 && node !== undefined) node = (node as Level).get(c as LabelValue)
    const series = (node as Series | undefined) ?? this.#add([a, b, c].slice(0, depth) as LabelValue[])
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

  #add (values: readonly LabelValue[]): Series {
    let level = this.#root
    for (let i = 0; i < values.length - 1; i++) {
      const value = values[i] as LabelValue
      let next = level.get(value) as Level | undefined
      if (next === undefined) {
        next = new Map()
        level.set(value, next)
      }
      level = next
    }
    const labels: Record<string, string> = {}
    this.#labelNames.forEach((name, i) => { labels[name] = String(values[i]) })
    const series: Series = { labels, buckets: new Float64Array(this.#bounds.length), sum: 0, count: 0 }
    level.set(values[values.length - 1] as LabelValue, series)
    this.#series.push(series)
    return series
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
    for (const series of this.#series) {
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
    this.#root.clear()
    this.#series.length = 0
  }
}
