// Which failures to switch Redis's client-side tracking on are refusals (announce by pub/sub from
// then on) and which are passing (retry, announcing both ways meanwhile). The fleet tests drive
// the refusals through real ACL users; the passing kinds cannot be produced on demand there.
import t from 'tap'
import { isTrackingRefusal } from '../../src/state/redis.ts'

t.test('a refusal holds; anything else is tried again', async (t) => {
  const refusals = [
    "NOPERM User bff has no permissions to run the 'client|tracking' command",
    'NOPERM No permissions to access a channel',
    "ERR unknown subcommand 'TRACKING'. Try CLIENT HELP.",
    "ERR unknown command 'client', with args beginning with: 'ID' ",
    'ERR syntax error'
  ]
  const passing = [
    'Command timed out',
    'Connection is closed.',
    "Stream isn't writeable and enableOfflineQueue options is false",
    'ERR The client ID you want redirect to does not exist',
    'LOADING Redis is loading the dataset in memory'
  ]
  for (const message of refusals) t.equal(isTrackingRefusal(new Error(message)), true, message)
  for (const message of passing) t.equal(isTrackingRefusal(new Error(message)), false, message)
  t.equal(isTrackingRefusal('NOPERM as a string'), true, 'whatever was thrown')
})
