import { parseArgs } from 'node:util'
import { CommandError } from './io.ts'
import type { CommandIo } from './io.ts'

export const CREDENTIAL_USAGE = `Usage: peerglance credential --operator-key FILE (--peer PEER_ID | --data-dir DIR) [--days N]

Prints a mesh membership credential for one agent, signed by the operator's key, to put in that
agent's mesh.credentialFile. Agents whose mesh.operatorKey is the operator key's peer id admit it.
The operator key file is made (Ed25519, mode 0600) on first use; its peer id, the value of
mesh.operatorKey, is printed on stderr. Keep it off the hypervisors.

Options:
  --operator-key FILE  the operator's key (libp2p protobuf encoding)
  --peer PEER_ID       the agent's peer id (peerglance status shows it)
  --data-dir DIR       or the agent's data dir, whose peer.key names it (made if absent)
  --days N             validity in days (default 365; 0 for no expiry)
  -h, --help           show this help`

export async function credentialCommand (argv: string[], io: CommandIo): Promise<number> {
  let values
  try {
    values = parseArgs({ args: argv, options: { 'operator-key': { type: 'string' }, peer: { type: 'string' }, 'data-dir': { type: 'string' }, days: { type: 'string' }, help: { type: 'boolean', short: 'h' } } }).values
  } catch (err) {
    throw new CommandError(`${(err as Error).message}\n\n${CREDENTIAL_USAGE}`, 2)
  }
  if (values.help === true) { io.stdout.write(`${CREDENTIAL_USAGE}\n`); return 0 }
  const keyFile = values['operator-key']
  if (keyFile == null || (values.peer == null) === (values['data-dir'] == null)) throw new CommandError(`give --operator-key and one of --peer or --data-dir\n\n${CREDENTIAL_USAGE}`, 2)
  const days = Number(values.days ?? 365)
  if (!Number.isFinite(days) || days < 0) throw new CommandError('--days must be a number of days, 0 or more', 2)
  // Loaded here: the other operator commands need no libp2p.
  const { dirname, basename } = await import('node:path')
  const { issueCredential, loadOrCreatePeerKey, peerIdFromPrivateKey } = await import('@peerglance/mesh')
  const operator = await loadOrCreatePeerKey(dirname(keyFile), basename(keyFile))
  let peer = values.peer
  if (peer == null) peer = peerIdFromPrivateKey(await loadOrCreatePeerKey(values['data-dir']!)).toString()
  let credential
  try {
    credential = await issueCredential(operator, peer, days === 0 ? 0 : Date.now() + days * 86_400_000)
  } catch (err) {
    throw new CommandError(`cannot issue a credential for ${peer}: ${(err as Error).message}`)
  }
  io.stderr.write(`operator key ${peerIdFromPrivateKey(operator).toString()} (mesh.operatorKey)\n`)
  io.stdout.write(`${JSON.stringify(credential)}\n`)
  return 0
}
