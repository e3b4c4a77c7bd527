import t, { type Test } from 'tap'
import {
  ConfigError,
  ConfigSchema,
  corsOrigins,
  loadConfig,
  loadConfigFor,
  SessionConfigSchema
} from '../../src/config/config.ts'

const SECRET = 'unit-test-session-secret-0123456789abcdef'
const TOKEN = 'unit-test-application-token-9f8e7d'
const REQUIRED = { EMNIFY_APPLICATION_TOKEN: TOKEN, SESSION_SECRET: SECRET }

function configError (fn: () => unknown): ConfigError {
  try {
    fn()
  } catch (error) {
    if (error instanceof ConfigError) return error
    throw error
  }
  throw new Error('expected a ConfigError')
}

/** Runs `fn` inside a fresh temporary working directory holding `files`. */
function inDirectory<T> (t: Test, files: Record<string, string>, fn: () => T): T {
  const dir = t.testdir(files)
  const previous = process.cwd()
  process.chdir(dir)
  try {
    return fn()
  } finally {
    process.chdir(previous)
  }
}

/** Sets process.env variables for one test and restores them afterwards. */
function withProcessEnv (t: Test, values: Record<string, string | undefined>) {
  const saved = new Map<string, string | undefined>()
  for (const [key, value] of Object.entries(values)) {
    saved.set(key, process.env[key])
    if (value === undefined) delete process.env[key]
    else process.env[key] = value
  }
  t.teardown(() => {
    for (const [key, value] of saved) {
      if (value === undefined) delete process.env[key]
      else process.env[key] = value
    }
  })
}

t.test('defaults match the contract table exactly', async (t) => {
  const config = loadConfig({ env: REQUIRED })
  // `has`: other sections of the contract add variables of their own.
  t.has(config, {
    HOST: '127.0.0.1',
    PORT: 3000,
    LOG_LEVEL: 'info',
    EMNIFY_API_URL: 'https://cdn.emnify.net',
    EMNIFY_APPLICATION_TOKEN: TOKEN,
    UPSTREAM_TIMEOUT_MS: 10000,
    SESSION_SECRET: SECRET,
    SESSION_ISSUER: 'emnify-bff',
    SESSION_AUDIENCE: 'emnify-bff',
    SESSION_TTL_S: 3600,
    SESSION_COOKIE_SECURE: true,
    CORS_ORIGINS: '',
    SHUTDOWN_DELAY_MS: 0,
    LOGIN_RATE_LIMIT_PER_IP_PER_MINUTE: 30,
    DOCS_ENABLED: true,
    METRICS_ENABLED: true,
    RATE_LIMIT_PER_MINUTE: 60
  })
  // The contract's own values, checked one by one so a renamed or retyped default is named in the failure.
  t.equal(config.HOST, '127.0.0.1')
  t.equal(config.PORT, 3000)
  t.equal(config.LOG_LEVEL, 'info')
  t.equal(config.EMNIFY_API_URL, 'https://cdn.emnify.net')
  t.equal(config.UPSTREAM_TIMEOUT_MS, 10000)
  t.equal(config.SESSION_ISSUER, 'emnify-bff')
  t.equal(config.SESSION_AUDIENCE, 'emnify-bff')
  t.equal(config.SESSION_TTL_S, 3600)
  t.equal(config.SESSION_COOKIE_SECURE, true)
  t.notOk('USERS_FILE' in config, 'USERS_FILE is optional and unset by default')
  t.equal(config.CORS_ORIGINS, '')
  t.equal(config.SHUTDOWN_DELAY_MS, 0)
  t.equal(config.LOGIN_RATE_LIMIT_PER_IP_PER_MINUTE, 30)
})

t.test('operability defaults match the contract', async (t) => {
  const config = loadConfig({ env: REQUIRED }) as Record<string, unknown>
  t.equal(config.DOCS_ENABLED, true)
  t.equal(config.METRICS_ENABLED, true)
  t.equal(config.METRICS_PORT, undefined)
  // Lowered from the contract's 600 so that one session cannot spend the whole upstream budget.
  t.equal(config.RATE_LIMIT_PER_MINUTE, 60)
})

t.test('variables outside the schema are not part of the configuration', async (t) => {
  const config = loadConfig({ env: { ...REQUIRED, PATH: '/usr/bin', HOME: '/root', SOMETHING_ELSE: 'x' } }) as Record<string, unknown>
  t.notOk('PATH' in config)
  t.notOk('SOMETHING_ELSE' in config)
})

t.test('both required variables are named when missing', async (t) => {
  const error = configError(() => loadConfig({ env: {} }))
  t.same(error.variables, ['EMNIFY_APPLICATION_TOKEN', 'SESSION_SECRET'])
  t.match(error.message, /EMNIFY_APPLICATION_TOKEN is required/)
  t.match(error.message, /SESSION_SECRET is required/)
  t.equal(error.name, 'ConfigError')
  t.ok(error instanceof Error)
})

t.test('every bad variable is named in one error', async (t) => {
  const error = configError(() => loadConfig({
    env: {
      SESSION_SECRET: 'too-short',
      HOST: undefined,
      PORT: 'eighty',
      LOG_LEVEL: 'verbose',
      EMNIFY_API_URL: 'ftp://cdn.emnify.net',
      UPSTREAM_TIMEOUT_MS: '-5',
      SESSION_TTL_S: '1.5',
      SESSION_COOKIE_SECURE: 'maybe',
      CORS_ORIGINS: 'not an origin',
      SHUTDOWN_DELAY_MS: 'soon'
    }
  }))
  const expected = [
    'CORS_ORIGINS',
    'EMNIFY_API_URL',
    'EMNIFY_APPLICATION_TOKEN',
    'LOG_LEVEL',
    'PORT',
    'SESSION_COOKIE_SECURE',
    'SESSION_SECRET',
    'SESSION_TTL_S',
    'SHUTDOWN_DELAY_MS',
    'UPSTREAM_TIMEOUT_MS'
  ]
  t.same(error.variables, expected)
  for (const variable of expected) t.match(error.message, variable)
  t.equal(error.message.split('\n').length, 1, 'one readable line')
  t.match(error.message, /^Invalid configuration: /)
  t.match(error.message, /PORT [^;]*"eighty"/, 'the offending value of a plain variable is shown')
})

t.test('secret values are never echoed in the message', async (t) => {
  const shortSecret = 'secret-value-that-is-too-short'
  const error = configError(() => loadConfig({ env: { ...REQUIRED, SESSION_SECRET: shortSecret, PORT: 'x' } }))
  t.same(error.variables, ['PORT', 'SESSION_SECRET'])
  t.notMatch(error.message, shortSecret)
  t.notMatch(error.message, 'secret-value')
  t.notMatch(error.message, TOKEN, 'valid secrets are not shown either')
})

t.test('credentials inside a URL are not echoed in the message', async (t) => {
  const error = configError(() => loadConfig({ env: { ...REQUIRED, EMNIFY_API_URL: 'https://svc:hunter2@cdn.emnify.net/api' } }))
  t.same(error.variables, ['EMNIFY_API_URL'])
  t.notMatch(error.message, 'hunter2')
  t.notMatch(error.message, 'svc:')
})

t.test('a long bad value is shortened in the message', async (t) => {
  const error = configError(() => loadConfig({ env: { ...REQUIRED, HOST: 'h'.repeat(500), PORT: '1'.repeat(500) } }))
  t.same(error.variables, ['PORT'])
  t.ok(error.message.length < 300, `message length ${error.message.length}`)
})

t.test('numbers and booleans are coerced from strings', async (t) => {
  const config = loadConfig({
    env: {
      ...REQUIRED,
      PORT: '8080',
      UPSTREAM_TIMEOUT_MS: '2500',
      SESSION_TTL_S: '600',
      SHUTDOWN_DELAY_MS: '5000',
      SESSION_COOKIE_SECURE: 'false'
    }
  })
  t.equal(config.PORT, 8080)
  t.equal(config.UPSTREAM_TIMEOUT_MS, 2500)
  t.equal(config.SESSION_TTL_S, 600)
  t.equal(config.SHUTDOWN_DELAY_MS, 5000)
  t.equal(config.SESSION_COOKIE_SECURE, false)
  t.equal(loadConfig({ env: { ...REQUIRED, SESSION_COOKIE_SECURE: 'true' } }).SESSION_COOKIE_SECURE, true)
})

t.test('a number too large to represent is rejected, not turned into Infinity', async (t) => {
  for (const variable of ['PORT', 'UPSTREAM_TIMEOUT_MS', 'SESSION_TTL_S', 'SHUTDOWN_DELAY_MS']) {
    for (const value of ['1e999', '9'.repeat(400), '-1e999']) {
      const error = configError(() => loadConfig({ env: { ...REQUIRED, [variable]: value } }))
      t.same(error.variables, [variable], `${variable}=${value.slice(0, 10)}`)
    }
  }
  const both = configError(() => loadConfig({ env: { ...REQUIRED, UPSTREAM_TIMEOUT_MS: '1e999', LOG_LEVEL: 'loud' } }))
  t.same(both.variables, ['LOG_LEVEL', 'UPSTREAM_TIMEOUT_MS'], 'named together with the other bad variables')
})

t.test('values that are not numbers or booleans are rejected, not guessed', async (t) => {
  const cases: Record<string, string[]> = {
    PORT: ['abc', '80.5', '-1', '65536'],
    UPSTREAM_TIMEOUT_MS: ['ten seconds', '0', '-100'],
    SESSION_TTL_S: ['1h', '0', '-3600'],
    SHUTDOWN_DELAY_MS: ['-1', '5s'],
    SESSION_COOKIE_SECURE: ['yes', 'no', 'on', 'maybe']
  }
  for (const [variable, values] of Object.entries(cases)) {
    for (const value of values) {
      const error = configError(() => loadConfig({ env: { ...REQUIRED, [variable]: value } }))
      t.same(error.variables, [variable], `${variable}=${value}`)
    }
  }
})

t.test('LOG_LEVEL accepts the pino levels only', async (t) => {
  for (const level of ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']) {
    t.equal(loadConfig({ env: { ...REQUIRED, LOG_LEVEL: level } }).LOG_LEVEL, level)
  }
  for (const level of ['verbose', 'INFO', 'warning']) {
    t.same(configError(() => loadConfig({ env: { ...REQUIRED, LOG_LEVEL: level } })).variables, ['LOG_LEVEL'], level)
  }
})

t.test('SESSION_SECRET needs at least 32 characters', async (t) => {
  t.same(configError(() => loadConfig({ env: { ...REQUIRED, SESSION_SECRET: 'x'.repeat(31) } })).variables, ['SESSION_SECRET'])
  t.equal(loadConfig({ env: { ...REQUIRED, SESSION_SECRET: 'x'.repeat(32) } }).SESSION_SECRET, 'x'.repeat(32))
})

t.test('EMNIFY_API_URL must be an http(s) origin', async (t) => {
  for (const url of ['https://cdn.emnify.net', 'http://127.0.0.1:8080', 'https://api.example.com:8443', 'https://cdn.emnify.net/', 'http://[::1]:3001']) {
    t.equal(loadConfig({ env: { ...REQUIRED, EMNIFY_API_URL: url } }).EMNIFY_API_URL, url, `${url} is accepted`)
  }
  const bad = [
    'https://cdn.emnify.net/api',
    'https://cdn.emnify.net/api/v1/',
    'https://cdn.emnify.net?debug=1',
    'https://cdn.emnify.net/?debug=1',
    'https://cdn.emnify.net#x',
    'ftp://cdn.emnify.net',
    'file:///etc/passwd',
    'cdn.emnify.net',
    '//cdn.emnify.net',
    'https://',
    'https://user:pw@cdn.emnify.net',
    'https://cdn.emnify .net',
    'javascript:alert(1)'
  ]
  for (const url of bad) {
    const error = configError(() => loadConfig({ env: { ...REQUIRED, EMNIFY_API_URL: url } }))
    t.same(error.variables, ['EMNIFY_API_URL'], `${url} is rejected`)
  }
})

t.test('CORS_ORIGINS', async (t) => {
  const parse = (value: string | undefined) => corsOrigins(loadConfig({ env: { ...REQUIRED, CORS_ORIGINS: value } }))

  t.test('empty or unset means no origins', async (t) => {
    t.same(parse(undefined), [])
    t.same(parse(''), [])
    t.same(parse('   '), [])
  })

  t.test('a comma-separated list is split and trimmed', async (t) => {
    t.same(parse('https://app.example.com'), ['https://app.example.com'])
    t.same(parse(' https://app.example.com , http://localhost:5173 ,https://admin.example.com:8443'), [
      'https://app.example.com',
      'http://localhost:5173',
      'https://admin.example.com:8443'
    ])
  })

  t.test('anything but a list of origins is rejected', async (t) => {
    for (const value of ['*', 'app.example.com', 'https://app.example.com/path', 'https://a.example.com,,https://b.example.com', 'https://a.example.com,', 'https://app.example.com?x=1', 'ftp://files.example.com', 'https://u:p@app.example.com']) {
      t.same(configError(() => loadConfig({ env: { ...REQUIRED, CORS_ORIGINS: value } })).variables, ['CORS_ORIGINS'], value)
    }
  })

  t.test('corsOrigins works on any object with CORS_ORIGINS', async (t) => {
    t.same(corsOrigins({ CORS_ORIGINS: 'https://a.example,https://b.example/' }), ['https://a.example', 'https://b.example'])
  })
})

t.test('an empty variable means the default', async (t) => {
  const config = loadConfig({
    env: {
      ...REQUIRED,
      HOST: '',
      PORT: '',
      LOG_LEVEL: '',
      EMNIFY_API_URL: '',
      UPSTREAM_TIMEOUT_MS: '',
      SESSION_ISSUER: '',
      SESSION_AUDIENCE: '',
      SESSION_TTL_S: '',
      SESSION_COOKIE_SECURE: '',
      USERS_FILE: '',
      CORS_ORIGINS: '',
      SHUTDOWN_DELAY_MS: ''
    }
  })
  t.equal(config.HOST, '127.0.0.1')
  t.equal(config.PORT, 3000)
  t.equal(config.LOG_LEVEL, 'info')
  t.equal(config.EMNIFY_API_URL, 'https://cdn.emnify.net')
  t.equal(config.UPSTREAM_TIMEOUT_MS, 10000)
  t.equal(config.SESSION_ISSUER, 'emnify-bff')
  t.equal(config.SESSION_AUDIENCE, 'emnify-bff')
  t.equal(config.SESSION_TTL_S, 3600)
  t.equal(config.SESSION_COOKIE_SECURE, true)
  t.equal(config.USERS_FILE, undefined)
  t.equal(config.SHUTDOWN_DELAY_MS, 0)
})

t.test('an empty required variable counts as missing', async (t) => {
  const error = configError(() => loadConfig({ env: { EMNIFY_APPLICATION_TOKEN: '', SESSION_SECRET: '' } }))
  t.same(error.variables, ['EMNIFY_APPLICATION_TOKEN', 'SESSION_SECRET'])
  t.match(error.message, /EMNIFY_APPLICATION_TOKEN is required/)
})

t.test('an empty variable in the process environment means the default too', async (t) => {
  withProcessEnv(t, { ...REQUIRED, PORT: '', SESSION_TTL_S: '', USERS_FILE: '', HOST: undefined })
  const config = loadConfig()
  t.equal(config.PORT, 3000)
  t.equal(config.SESSION_TTL_S, 3600)
  t.equal(config.USERS_FILE, undefined)
})

t.test('without options the process environment is read', async (t) => {
  withProcessEnv(t, { ...REQUIRED, PORT: '4321', HOST: '0.0.0.0' })
  const config = loadConfig()
  t.equal(config.PORT, 4321)
  t.equal(config.HOST, '0.0.0.0')
})

t.test('an explicit env is the only source: nothing leaks in from the process environment', async (t) => {
  withProcessEnv(t, { HOST: '10.9.9.9', USERS_FILE: '/etc/leaked-users.json', SESSION_SECRET: 'p'.repeat(40) })
  const config = loadConfig({ env: REQUIRED })
  t.equal(config.HOST, '127.0.0.1')
  t.equal(config.USERS_FILE, undefined)
  t.equal(config.SESSION_SECRET, SECRET)
  const error = configError(() => loadConfig({ env: { EMNIFY_APPLICATION_TOKEN: TOKEN } }))
  t.same(error.variables, ['SESSION_SECRET'])
})

t.test('.env in the working directory', async (t) => {
  const dotenv = [
    '# local development',
    `SESSION_SECRET=${SECRET}`,
    'PORT=4000',
    'HOST=0.0.0.0',
    'LOG_LEVEL=debug',
    'SESSION_COOKIE_SECURE=false',
    'CORS_ORIGINS="http://localhost:5173, http://localhost:4173"',
    'USERS_FILE=',
    ''
  ].join('\n')

  t.test('is read when dotenv is on', async (t) => {
    const config = inDirectory(t, { '.env': dotenv }, () => loadConfig({ dotenv: true, env: { EMNIFY_APPLICATION_TOKEN: TOKEN } }))
    t.equal(config.SESSION_SECRET, SECRET)
    t.equal(config.PORT, 4000)
    t.equal(config.HOST, '0.0.0.0')
    t.equal(config.LOG_LEVEL, 'debug')
    t.equal(config.SESSION_COOKIE_SECURE, false)
    t.same(corsOrigins(config), ['http://localhost:5173', 'http://localhost:4173'])
    t.equal(config.USERS_FILE, undefined, 'an empty value in .env means the default')
  })

  t.test('process-provided values win over .env', async (t) => {
    const config = inDirectory(t, { '.env': dotenv }, () => loadConfig({
      dotenv: true,
      env: { EMNIFY_APPLICATION_TOKEN: TOKEN, PORT: '5000', LOG_LEVEL: 'warn' }
    }))
    t.equal(config.PORT, 5000)
    t.equal(config.LOG_LEVEL, 'warn')
    t.equal(config.HOST, '0.0.0.0', 'variables only in .env still apply')
  })

  t.test('process.env wins over .env when no explicit env is given', async (t) => {
    withProcessEnv(t, { EMNIFY_APPLICATION_TOKEN: TOKEN, SESSION_SECRET: undefined, PORT: '6000', HOST: undefined })
    const config = inDirectory(t, { '.env': dotenv }, () => loadConfig({ dotenv: true }))
    t.equal(config.PORT, 6000)
    t.equal(config.SESSION_SECRET, SECRET)
    t.equal(config.HOST, '0.0.0.0')
  })

  t.test('an empty process value does not hide the .env value', async (t) => {
    const config = inDirectory(t, { '.env': dotenv }, () => loadConfig({ dotenv: true, env: { EMNIFY_APPLICATION_TOKEN: TOKEN, PORT: '' } }))
    t.equal(config.PORT, 4000)
  })

  t.test('is ignored when dotenv is off', async (t) => {
    const error = inDirectory(t, { '.env': dotenv }, () => configError(() => loadConfig({ env: { EMNIFY_APPLICATION_TOKEN: TOKEN } })))
    t.same(error.variables, ['SESSION_SECRET'])
  })

  t.test('a missing .env is fine', async (t) => {
    const config = inDirectory(t, {}, () => loadConfig({ dotenv: true, env: REQUIRED }))
    t.equal(config.PORT, 3000)
  })

  t.test('bad values from .env are reported like any other', async (t) => {
    const error = inDirectory(t, { '.env': 'PORT=not-a-port\nSESSION_SECRET=short\n' }, () => configError(() => loadConfig({ dotenv: true, env: { EMNIFY_APPLICATION_TOKEN: TOKEN } })))
    t.same(error.variables, ['PORT', 'SESSION_SECRET'])
    t.notMatch(error.message, /short/)
  })

  t.test('the working directory is restored afterwards', async (t) => {
    const before = process.cwd()
    inDirectory(t, {}, () => t.not(process.cwd(), before))
    t.equal(process.cwd(), before)
  })
})

t.test('loadConfigFor validates only the given schema (session minting needs session variables only)', async (t) => {
  const config = loadConfigFor(SessionConfigSchema, { env: { SESSION_SECRET: SECRET, SESSION_TTL_S: '120' } })
  t.same(config, { SESSION_SECRET: SECRET, SESSION_ISSUER: 'emnify-bff', SESSION_AUDIENCE: 'emnify-bff', SESSION_TTL_S: 120 })
  t.same(configError(() => loadConfigFor(SessionConfigSchema, { env: {} })).variables, ['SESSION_SECRET'])
})

t.test('loading does not modify the exported schema', async (t) => {
  const before = JSON.stringify(ConfigSchema)
  loadConfig({ env: REQUIRED })
  configError(() => loadConfig({ env: {} }))
  t.equal(JSON.stringify(ConfigSchema), before)
})
