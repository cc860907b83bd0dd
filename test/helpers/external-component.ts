import { component, xml } from '@xmpp/component';
import type { Element } from 'ltx';

type Test = { teardown(fn: () => unknown): void };

/** An echo bot written with @xmpp/component (xmpp.js): answers every chat message with "echo: BODY". */
export async function echoComponent(t: Test, port: number, domain: string, password: string): Promise<{ stop(): Promise<void>; heard: Element[] }> {
  const bot = component({ service: `xmpp://127.0.0.1:${port}`, domain, password });
  const heard: Element[] = [];
  bot.on('error', () => undefined);
  bot.on('stanza', (stanza: Element) => {
    if (!stanza.is('message') || stanza.attrs.type === 'error') return;
    heard.push(stanza);
    void bot.send(xml('message', { from: stanza.attrs.to, to: stanza.attrs.from, type: 'chat' }, xml('body', {}, `echo: ${stanza.getChildText('body')}`))).catch(() => undefined);
  });
  // Tests reconnect on purpose.
  (bot as unknown as { reconnect: { stop(): void } }).reconnect.stop();
  await bot.start();
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await bot.stop().catch(() => undefined);
  };
  t.teardown(stop);
  return { stop, heard };
}
