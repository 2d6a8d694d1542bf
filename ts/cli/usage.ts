/** A mistake in the command line; the CLI prints it with the command's usage and exits 2.
 *  `command` names the command whose help to print (main falls back to the one it ran). */
export class UsageError extends Error {
  override name = 'UsageError'
  constructor(message: string, readonly command?: string) { super(message) }
}

/** A command that cannot do what was asked (files in the way, a refused peer): printed as
 *  `prcl <command>: message`, exit 1, no stack trace. */
export class CommandError extends Error {
  override name = 'CommandError'
}
