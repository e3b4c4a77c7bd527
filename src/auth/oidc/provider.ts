import {
  allowInsecureRequests,
  AuthorizationResponseError,
  ClientError,
  ClientSecretBasic,
  customFetch,
  discovery,
  enableNonRepudiationChecks,
  ResponseBodyError,
  type Configuration,
  type CustomFetch,
  type DiscoveryRequestOptions
} from 'openid-client'

export type { CustomFetch }

export interface ProviderSettings {
  issuer: string
  clientId: string
  clientSecret: string
  timeoutMs: number
  fetch?: CustomFetch | undefined
}

/** The provider could not be reached (or answered 5xx): start-up stops, later requests get 503. */
export class ProviderUnavailable extends Error {
  override name = 'ProviderUnavailable'
}

/**
 * Reads the provider's metadata once, at start-up: a BFF that cannot reach its provider would
 * only fail later, at every sign-in, with a less clear message.
 */
export async function discoverProvider (settings: ProviderSettings): Promise<Configuration> {
  const issuer = new URL(settings.issuer)
  // openid-client trusts TLS alone for ID tokens from the token endpoint; the BFF checks their
  // signature against the provider's keys as well (a plain-http provider has no TLS to trust).
  const options: DiscoveryRequestOptions = { timeout: Math.max(1, Math.ceil(settings.timeoutMs / 1000)), execute: [enableNonRepudiationChecks] }
  // Plain http only when the operator configured an http issuer (a local provider).
  if (issuer.protocol === 'http:') options.execute?.push(allowInsecureRequests)
  if (settings.fetch !== undefined) options[customFetch] = settings.fetch
  try {
    return await discovery(issuer, settings.clientId, { client_secret: settings.clientSecret }, ClientSecretBasic(settings.clientSecret), options)
  } catch (error) {
    const what = isUnavailable(error) ? 'the provider is unreachable' : 'its answer is not usable OpenID Provider metadata'
    throw new Error(`SSO is configured but discovery failed for OIDC_ISSUER ${issuer.href}: ${what} (${failureReason(error)}). ` +
      'Check OIDC_ISSUER and that the provider is reachable from here, or unset OIDC_ISSUER to run without SSO.', { cause: error })
  }
}

/** Whether a failure of a call to the provider means "unreachable or down" rather than "refused". */
export function isUnavailable (error: unknown): boolean {
  if (error instanceof ProviderUnavailable) return true
  if (error instanceof TypeError && error.message === 'fetch failed') return true
  if (error instanceof DOMException && (error.name === 'TimeoutError' || error.name === 'AbortError')) return true
  if (error instanceof ResponseBodyError) return error.status >= 500
  if (error instanceof ClientError && error.code === 'OAUTH_RESPONSE_IS_NOT_CONFORM') {
    const response = error.cause
    return response instanceof Response && response.status >= 500
  }
  return false
}

const ERROR_CODE = /^[A-Za-z0-9_.-]{1,64}$/

/**
 * A short, log-safe reason: error class, library code, OAuth error code, the network error's
 * code. Never a message body or a response, which may quote tokens.
 */
export function failureReason (error: unknown): string {
  if (!(error instanceof Error)) return 'unknown'
  const parts: string[] = [error.name]
  const code = (error as { code?: unknown }).code
  if (typeof code === 'string' && ERROR_CODE.test(code)) parts.push(code)
  if (error instanceof ResponseBodyError || error instanceof AuthorizationResponseError) {
    if (ERROR_CODE.test(error.error)) parts.push(error.error)
  }
  if (error instanceof ResponseBodyError) parts.push(String(error.status))
  const cause = (error as { cause?: { code?: unknown } }).cause
  if (typeof cause?.code === 'string' && ERROR_CODE.test(cause.code)) parts.push(cause.code)
  return parts.join(' ')
}

/** The provider's refusal code for the user-facing detail (e.g. `access_denied`), when it sent one. */
export function providerError (error: unknown): string | undefined {
  if (error instanceof AuthorizationResponseError && /^[a-z_]{1,64}$/.test(error.error)) return error.error
  return undefined
}
