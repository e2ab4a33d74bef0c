/**
 * Self-test of the fake Slack's interactive side (buttons, menus, slash commands, modals, the Home tab,
 * response_urls, ephemeral messages), driven by the REAL @slack/web-api and @slack/socket-mode clients.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { ErrorCode, type WebClient } from '@slack/web-api';
import type { Button } from '@slack/web-api';
import type { FakeSlack } from './fake-slack.ts';
import type { FakeSlackOptions } from './fake-slack.ts';
import { guardSocketModeShutdownBug } from './harness.ts';
import { fakeWithClients } from './sdk-clients.ts';

guardSocketModeShutdownBug();

// ───────────────────────────── Set-up helpers ─────────────────────────────

/** A frame as the app's SocketModeClient saw it. */
interface Received {
  type: string;
  body: any;
  accepts_response_payload: boolean;
}

/** What the app acks an envelope with: a payload, or null to leave it un-acked. */
type Answer = (type: string, body: any) => Record<string, unknown> | null | Promise<Record<string, unknown> | null>;

interface Setup {
  fake: FakeSlack;
  web: WebClient;
  /** Starts the app's socket; every frame is recorded and acked with what `answer` gives (default: an empty ack). */
  connect(answer?: Answer): Promise<Received[]>;
}

async function setup(t: TestContext, opts?: FakeSlackOptions): Promise<Setup> {
  const { fake, web: webClient, socket } = await fakeWithClients(t, opts);
  const web = webClient();
  const connect = async (answer: Answer = () => ({})) => {
    const client = socket();
    const received: Received[] = [];
    client.on('slack_event', async ({ ack, type, body, accepts_response_payload }) => {
      received.push({ type, body, accepts_response_payload });
      const reply = await answer(type, body);
      if (reply !== null) await ack(reply);
    });
    await client.start();
    return received;
  };
  fake.addUser({ id: 'UALICE', name: 'alice' });
  fake.addUser({ id: 'UBOB', name: 'bob' });
  return { fake, web, connect };
}

/** Asserts that a Web API call fails with this Slack error code; gives back the error's data. */
async function rejectsWith(call: Promise<unknown>, error: string): Promise<any> {
  let data: any;
  await assert.rejects(call, (e: any) => {
    assert.equal(e.code, ErrorCode.PlatformError);
    assert.equal(e.data.error, error);
    data = e.data;
    return true;
  });
  return data;
}

/** A POST to a response_url, as an app makes it. */
async function respond(url: string, body: unknown): Promise<{ status: number; json: any }> {
  const res = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  return { status: res.status, json: await res.json() };
}

const button = (text: string, action_id?: string, extra: Partial<Button> = {}): Button => ({ type: 'button', text: { type: 'plain_text', text }, ...(action_id ? { action_id } : {}), ...extra });

/** An incident post as the bot would make it: a section with a runbook button, then an actions block. */
const incidentBlocks = [
  { type: 'section', text: { type: 'mrkdwn', text: '*DB down* on db-1' }, accessory: button('Runbook', undefined, { url: 'https://runbooks.example/db' }) },
  {
    type: 'actions',
    block_id: 'incident_actions',
    elements: [
      button('Acknowledge', 'ack', { value: 'INC-1', style: 'primary' }),
      button('Resolve', 'resolve', { value: 'INC-1' }),
      {
        type: 'static_select',
        action_id: 'snooze',
        placeholder: { type: 'plain_text', text: 'Snooze for…' },
        options: [
          { text: { type: 'plain_text', text: '1 hour' }, value: '3600' },
          { text: { type: 'plain_text', text: '1 day' }, value: '86400' },
        ],
      },
      {
        type: 'overflow',
        action_id: 'more',
        options: [
          { text: { type: 'plain_text', text: 'Page again' }, value: 'page' },
          { text: { type: 'plain_text', text: 'Mute host' }, value: 'mute' },
        ],
      },
    ],
  },
];

/** A modal view; an `extra` field set to undefined is left out, as it would be on the wire. */
const modal = (blocks: unknown[], extra: Record<string, unknown> = {}): Record<string, unknown> => {
  const view: Record<string, unknown> = {
    type: 'modal',
    callback_id: 'resolve_incident',
    private_metadata: '{"incident":"INC-1"}',
    title: { type: 'plain_text', text: 'Resolve INC-1' },
    submit: { type: 'plain_text', text: 'Resolve' },
    blocks,
    ...extra,
  };
  return Object.fromEntries(Object.entries(view).filter(([, value]) => value !== undefined));
};

const causeInput = { type: 'input', block_id: 'cause', label: { type: 'plain_text', text: 'Cause' }, element: { type: 'plain_text_input', action_id: 'cause_text' } };
const noteInput = { type: 'input', block_id: 'note', optional: true, label: { type: 'plain_text', text: 'Note' }, element: { type: 'plain_text_input', action_id: 'note_text' } };

// ───────────────────────────── Buttons and menus ─────────────────────────────

test("a click on a message's button reaches the app as Slack's block_actions payload and resolves with the ack's payload", async (t) => {
  const { fake, web, connect } = await setup(t);
  const ops = fake.addChannel({ name: 'ops', members: ['UALICE'] });
  const received = await connect((type) => (type === 'interactive' ? { seen: true } : {}));
  const posted = await web.chat.postMessage({ channel: ops.id, text: 'DB down', blocks: incidentBlocks });

  const click = await fake.click('UALICE', ops.id, posted.ts!, 'Acknowledge');

  assert.deepEqual(click.ack, { seen: true });
  assert.match(click.trigger_id!, /^\d+\.\d+\.[0-9a-f]{32}$/);
  assert.match(click.response_url!, /^http:\/\/127\.0\.0\.1:\d+\/actions\/T0FAKE\/\d+\/[0-9a-f]{24}$/);
  assert.match(click.payload.actions[0].action_ts, /^\d{10}\.\d{6}$/);
  assert.deepEqual(click.payload, {
    type: 'block_actions',
    user: { id: 'UALICE', username: 'alice', name: 'alice', team_id: 'T0FAKE' },
    api_app_id: 'A0FAKE',
    token: 'fake-verification-token',
    container: { type: 'message', message_ts: posted.ts, channel_id: ops.id, is_ephemeral: false },
    trigger_id: click.trigger_id,
    team: { id: 'T0FAKE', domain: 'fake' },
    enterprise: null,
    is_enterprise_install: false,
    channel: { id: ops.id, name: 'ops' },
    message: { type: 'message', ts: posted.ts, user: 'UBOT', bot_id: 'BBOT', text: 'DB down', blocks: incidentBlocks },
    state: { values: { incident_actions: { snooze: { type: 'static_select', selected_option: null } } } },
    response_url: click.response_url,
    actions: [
      {
        action_id: 'ack',
        block_id: 'incident_actions',
        text: { type: 'plain_text', text: 'Acknowledge', emoji: true },
        value: 'INC-1',
        style: 'primary',
        type: 'button',
        action_ts: click.payload.actions[0].action_ts,
      },
    ],
  });
  const interactive = received.filter((r) => r.type === 'interactive');
  assert.deepEqual(interactive, [{ type: 'interactive', body: click.payload, accepts_response_payload: true }]);
  assert.deepEqual(fake.interactions.map((i) => [i.type, i.envelope_id, i.ack]), [['interactive', click.envelope_id, { seen: true }]]);
});

test('a button without block_id or action_id (a section accessory) gets ids Slack would make up, the same on every click', async (t) => {
  const { fake, web, connect } = await setup(t);
  const ops = fake.addChannel({ name: 'ops' });
  await connect();
  const posted = await web.chat.postMessage({ channel: ops.id, text: 'DB down', blocks: incidentBlocks });

  const first = await fake.click('UALICE', ops.id, posted.ts!, 'Runbook');
  const second = await fake.click('UBOB', ops.id, posted.ts!, 'Runbook');

  const [action] = first.payload.actions;
  assert.match(action.block_id, /^[A-Za-z0-9]{5}$/);
  assert.match(action.action_id, /^[A-Za-z0-9]{5}$/);
  assert.equal(action.value, undefined);
  assert.deepEqual([second.payload.actions[0].block_id, second.payload.actions[0].action_id], [action.block_id, action.action_id]);
  assert.notEqual(first.trigger_id, second.trigger_id);
  assert.notEqual(first.response_url, second.response_url);
});

test('a click on a label no button carries throws, naming the buttons there are; a shared label needs a choice', async (t) => {
  const { fake, web, connect } = await setup(t);
  const ops = fake.addChannel({ name: 'ops' });
  await connect();
  const posted = await web.chat.postMessage({ channel: ops.id, text: 'DB down', blocks: incidentBlocks });
  const digest = await web.chat.postMessage({
    channel: ops.id,
    text: 'Two incidents',
    blocks: [
      { type: 'actions', block_id: 'inc1', elements: [button('Ack', 'ack', { value: 'INC-1' })] },
      { type: 'actions', block_id: 'inc2', elements: [button('Ack', 'ack', { value: 'INC-2' })] },
    ],
  });

  await assert.rejects(fake.click('UALICE', ops.id, posted.ts!, 'Silence'), /no button "Silence" on message .* it has "Runbook", "Acknowledge", "Resolve"/);
  await assert.rejects(fake.click('UALICE', ops.id, digest.ts!, 'Ack'), /2 elements match button "Ack".*block_id inc1 action_id ack; block_id inc2 action_id ack/);
  await assert.rejects(fake.click('UALICE', ops.id, '1.000001', 'Ack'), /UALICE sees no message 1\.000001/);
  await assert.rejects(fake.click('UNOBODY', ops.id, posted.ts!, 'Ack'), /no user UNOBODY; add them first/);

  const chosen = await fake.click('UALICE', ops.id, digest.ts!, 'Ack', { value: 'INC-2' });
  assert.deepEqual([chosen.payload.actions[0].block_id, chosen.payload.actions[0].value], ['inc2', 'INC-2']);
  assert.equal(fake.interactions.length, 1);
});

test('choose picks an option of a static_select by its placeholder and of an overflow menu, as Slack reports them', async (t) => {
  const { fake, web, connect } = await setup(t);
  const ops = fake.addChannel({ name: 'ops' });
  await connect();
  const posted = await web.chat.postMessage({ channel: ops.id, text: 'DB down', blocks: incidentBlocks });

  const snooze = await fake.choose('UALICE', ops.id, posted.ts!, 'Snooze for…', '1 day');
  const more = await fake.choose('UALICE', ops.id, posted.ts!, '…', 'Mute host');

  const day = { text: { type: 'plain_text', text: '1 day' }, value: '86400' };
  assert.deepEqual(snooze.payload.actions, [
    { type: 'static_select', action_id: 'snooze', block_id: 'incident_actions', selected_option: day, placeholder: { type: 'plain_text', text: 'Snooze for…' }, action_ts: snooze.payload.actions[0].action_ts },
  ]);
  assert.deepEqual(snooze.payload.state, { values: { incident_actions: { snooze: { type: 'static_select', selected_option: day } } } });
  assert.deepEqual(more.payload.actions, [
    { type: 'overflow', action_id: 'more', block_id: 'incident_actions', selected_option: { text: { type: 'plain_text', text: 'Mute host' }, value: 'mute' }, action_ts: more.payload.actions[0].action_ts },
  ]);
  await assert.rejects(fake.choose('UALICE', ops.id, posted.ts!, 'Snooze for…', '1 week'), /has no option "1 week"; its options are "1 hour", "1 day"/);
  await assert.rejects(fake.choose('UALICE', ops.id, posted.ts!, 'Priority', 'High'), /no menu "Priority" .* it has "Snooze for…", an overflow \(action_id more\)/);
  assert.equal((await fake.choose('UALICE', ops.id, posted.ts!, 'more', 'Page again')).payload.actions[0].selected_option.value, 'page');
});

test('an interaction the app never acks fails after interactionAckTimeoutMs, as Slack shows the person an error', async (t) => {
  const { fake, web, connect } = await setup(t, { interactionAckTimeoutMs: 200 });
  const ops = fake.addChannel({ name: 'ops' });
  await connect((type) => (type === 'interactive' ? null : {}));
  const posted = await web.chat.postMessage({ channel: ops.id, text: 'DB down', blocks: incidentBlocks });

  await assert.rejects(fake.click('UALICE', ops.id, posted.ts!, 'Resolve'), /the click on "Resolve" \(envelope [0-9a-f-]+\) was not acked within 200 ms/);
  assert.equal(fake.interactions[0]!.ackedAt, undefined);
});

// ───────────────────────────── Slash commands and response_urls ─────────────────────────────

test('a slash command arrives as slash_commands with the documented payload; a message in its ack is shown to the person alone', async (t) => {
  const { fake, connect } = await setup(t);
  const ops = fake.addChannel({ name: 'ops' });
  const received = await connect((type, body) => (type === 'slash_commands' ? { response_type: 'ephemeral', text: `No incident matches "${body.text}"` } : {}));

  const command = await fake.slash('UALICE', ops.id, 'ack INC-9');

  assert.deepEqual(command.payload, {
    token: 'fake-verification-token',
    team_id: 'T0FAKE',
    team_domain: 'fake',
    channel_id: ops.id,
    channel_name: 'ops',
    user_id: 'UALICE',
    user_name: 'alice',
    command: '/ims',
    text: 'ack INC-9',
    api_app_id: 'A0FAKE',
    is_enterprise_install: 'false',
    response_url: command.response_url,
    trigger_id: command.trigger_id,
  });
  assert.match(command.response_url!, /\/commands\/T0FAKE\/\d+\/[0-9a-f]+$/);
  assert.deepEqual(received.filter((r) => r.type === 'slash_commands'), [{ type: 'slash_commands', body: command.payload, accepts_response_payload: true }]);
  assert.deepEqual(command.ack, { response_type: 'ephemeral', text: 'No incident matches "ack INC-9"' });
  const [shown] = fake.ephemeralsFor('UALICE');
  assert.deepEqual(shown, { channel: ops.id, user: 'UALICE', ts: shown!.ts, text: 'No incident matches "ack INC-9"', via: 'ack' });
  assert.deepEqual(command.responses().map((r) => [r.via, r.did, r.status]), [['ack', ['ephemeral'], 200]]);
  assert.deepEqual(fake.messagesIn(ops.id), []);
});

test("a slash command's response_url answers ephemerally by default, posts in the channel when asked, ignores replace_original and takes 5 uses", async (t) => {
  const { fake, connect } = await setup(t);
  const ops = fake.addChannel({ name: 'ops' });
  const received = await connect();
  const { response_url } = await fake.slash('UALICE', ops.id, 'status');
  const url = response_url!;

  assert.deepEqual(await respond(url, { text: 'Checking…' }), { status: 200, json: { ok: true } });
  assert.deepEqual(await respond(url, { response_type: 'in_channel', text: '2 incidents open' }), { status: 200, json: { ok: true } });
  assert.deepEqual(await respond(url, { replace_original: true, text: 'Still checking' }), { status: 200, json: { ok: true } });
  assert.deepEqual(await respond(url, { response_type: 'in_channel', text: 'Details', thread_ts: fake.messagesIn(ops.id)[0]!.ts }), { status: 200, json: { ok: true } });
  assert.deepEqual(await respond(url, {}), { status: 400, json: { ok: false, error: 'no_text' } });
  assert.deepEqual(await respond(url, { text: 'Done' }), { status: 200, json: { ok: true } });
  assert.deepEqual(await respond(url, { text: 'One too many' }), { status: 404, json: { ok: false, error: 'Expired url' } });

  assert.deepEqual(fake.ephemeralsFor('UALICE').map((e) => [e.text, e.via]), [['Checking…', 'response_url'], ['Still checking', 'response_url'], ['Done', 'response_url']]);
  const [visible, reply] = fake.messagesIn(ops.id);
  assert.deepEqual([visible!.text, visible!.bot_id, visible!.user, visible!.reply_count], ['2 incidents open', 'BBOT', 'UBOT', 1]);
  assert.deepEqual([reply!.text, reply!.thread_ts], ['Details', visible!.ts]);
  await fake.waitFor(() => received.some((r) => r.body.event?.text === '2 incidents open'), 'the in_channel post echoed as a message event');
  assert.deepEqual(fake.responsesTo(url).map((r) => [r.did, r.status, r.error]), [
    [['ephemeral'], 200, undefined],
    [['in_channel'], 200, undefined],
    [['ephemeral'], 200, undefined],
    [['in_channel'], 200, undefined],
    [[], 400, 'no_text'],
    [['ephemeral'], 200, undefined],
    [[], 404, 'Expired url'],
  ]);
  assert.equal((await respond(`${url}0`, { text: 'x' })).json.error, 'no_service');
});

test('a response_url older than responseUrlTtlMs is refused as expired', async (t) => {
  const { fake, connect } = await setup(t, { responseUrlTtlMs: 100 });
  const ops = fake.addChannel({ name: 'ops' });
  await connect();
  const { response_url } = await fake.slash('UALICE', ops.id, 'status');

  await sleep(150);
  assert.deepEqual(await respond(response_url!, { text: 'Late' }), { status: 404, json: { ok: false, error: 'Expired url' } });
  assert.deepEqual(fake.ephemeralsFor('UALICE'), []);
});

test("a click's response_url replaces or deletes the message the button was on, and the app sees it changed", async (t) => {
  const { fake, web, connect } = await setup(t);
  const ops = fake.addChannel({ name: 'ops' });
  const received = await connect();
  const posted = await web.chat.postMessage({ channel: ops.id, text: 'DB down', blocks: incidentBlocks });
  const acked = [{ type: 'section', text: { type: 'mrkdwn', text: '*DB down*: acknowledged by <@UALICE>' } }];

  const click = await fake.click('UALICE', ops.id, posted.ts!, 'Acknowledge');
  assert.deepEqual(await respond(click.response_url!, { replace_original: 'true', text: 'DB down (acked)', blocks: acked }), { status: 200, json: { ok: true } });
  const replaced = fake.messagesIn(ops.id)[0]!;
  assert.deepEqual([replaced.ts, replaced.text, replaced.blocks], [posted.ts, 'DB down (acked)', acked]);
  await fake.waitFor(() => received.some((r) => r.body.event?.subtype === 'message_changed' && r.body.event.message.ts === posted.ts), 'message_changed');

  await web.chat.update({ channel: ops.id, ts: posted.ts!, text: 'DB down', blocks: incidentBlocks });
  const second = await fake.click('UBOB', ops.id, posted.ts!, 'Resolve');
  assert.deepEqual(await respond(second.response_url!, { delete_original: true, text: 'Resolved; the post is gone' }), { status: 200, json: { ok: true } });
  assert.deepEqual(fake.messagesIn(ops.id), []);
  assert.deepEqual(fake.ephemeralsFor('UBOB').map((e) => e.text), ['Resolved; the post is gone']);
  assert.deepEqual(second.responses().map((r) => [r.did, r.ts]), [[['deleted', 'ephemeral'], fake.ephemeralsFor('UBOB')[0]!.ts]]);
  await fake.waitFor(() => received.some((r) => r.body.event?.subtype === 'message_deleted' && r.body.event.deleted_ts === posted.ts), 'message_deleted');
  assert.deepEqual(await respond(second.response_url!, { replace_original: true, text: 'Gone' }), { status: 404, json: { ok: false, error: 'message_not_found' } });
});

test('a button on an ephemeral message is clicked without the message in the payload; its response_url replaces, then deletes it', async (t) => {
  const { fake, web, connect } = await setup(t);
  const ops = fake.addChannel({ name: 'ops' });
  await connect();
  const { message_ts } = await web.chat.postEphemeral({
    channel: ops.id,
    user: 'UALICE',
    text: 'Really resolve INC-1?',
    blocks: [{ type: 'actions', block_id: 'confirm', elements: [button('Yes', 'yes'), button('No', 'no')] }],
  });

  const click = await fake.click('UALICE', ops.id, message_ts!, 'Yes');
  assert.deepEqual(click.payload.container, { type: 'message', message_ts, channel_id: ops.id, is_ephemeral: true });
  assert.equal('message' in click.payload, false);
  await assert.rejects(fake.click('UBOB', ops.id, message_ts!, 'Yes'), /UBOB sees no message/);

  await respond(click.response_url!, { replace_original: true, text: 'Resolved INC-1' });
  assert.deepEqual(fake.ephemeralsFor('UALICE').map((e) => [e.ts, e.text, e.blocks]), [[message_ts, 'Resolved INC-1', undefined]]);
  await respond(click.response_url!, { delete_original: true });
  assert.deepEqual(fake.ephemeralsFor('UALICE'), []);
  assert.deepEqual(click.responses().map((r) => r.did), [['replaced'], ['deleted']]);
});

// ───────────────────────────── chat.postEphemeral, blocks, usergroups ─────────────────────────────

test('chat.postEphemeral shows a message to one channel member, keeps it out of the history and answers message_ts', async (t) => {
  const { fake, web, connect } = await setup(t);
  const ops = fake.addChannel({ name: 'ops', members: ['UALICE'] });
  const open = fake.addChannel({ name: 'open' });
  const received = await connect();

  const { message_ts } = await web.chat.postEphemeral({ channel: ops.id, user: 'UALICE', text: 'Only you can see this' });
  assert.match(message_ts!, /^\d{10}\.\d{6}$/);
  await rejectsWith(web.chat.postEphemeral({ channel: ops.id, user: 'UBOB', text: 'Not a member' }), 'user_not_in_channel');
  await rejectsWith(web.chat.postEphemeral({ channel: ops.id, user: 'UNOBODY', text: 'Nobody' }), 'user_not_in_channel');
  await rejectsWith(web.chat.postEphemeral({ channel: ops.id, user: 'UALICE', text: '' }), 'no_text');
  await rejectsWith(web.chat.postEphemeral({ channel: 'CNONE', user: 'UALICE', text: 'x' }), 'channel_not_found');
  await web.chat.postEphemeral({ channel: open.id, user: 'UBOB', text: 'This channel lists no members, so anyone known may be shown it' });

  assert.deepEqual(fake.ephemeralsFor('UALICE'), [{ channel: ops.id, user: 'UALICE', ts: message_ts, text: 'Only you can see this', via: 'chat.postEphemeral' }]);
  assert.equal(fake.ephemeralsFor('UBOB').length, 1);
  assert.deepEqual([fake.messagesIn(ops.id), fake.messagesIn(open.id)], [[], []]);
  await sleep(50);
  assert.deepEqual(received, []);
  assert.equal((await fake.waitForEphemeral('UALICE', (e) => e.text.startsWith('Only'))).ts, message_ts);
});

test('chat.postMessage and chat.update keep actions blocks unchanged and refuse past Slack limits with invalid_blocks', async (t) => {
  const { fake, web } = await setup(t);
  const ops = fake.addChannel({ name: 'ops' });
  const posted = await web.chat.postMessage({ channel: ops.id, text: 'DB down', blocks: incidentBlocks });
  assert.deepEqual(fake.messagesIn(ops.id)[0]!.blocks, incidentBlocks);

  const actions = (...elements: unknown[]) => [{ type: 'actions', elements }];
  const many = Array.from({ length: 26 }, (_, i) => button(`B${i}`, `b${i}`));
  const refused = await rejectsWith(web.chat.postMessage({ channel: ops.id, text: 'x', blocks: actions(...many) }), 'invalid_blocks');
  assert.deepEqual(refused.response_metadata.messages, ['[ERROR] no more than 25 items allowed [json-pointer:/blocks/0/elements]']);
  const long = await rejectsWith(web.chat.postMessage({ channel: ops.id, text: 'x', blocks: actions(button('x'.repeat(76), 'long')) }), 'invalid_blocks');
  assert.deepEqual(long.response_metadata.messages, ['[ERROR] must be less than 76 characters [json-pointer:/blocks/0/elements/0/text/text]']);
  await rejectsWith(web.chat.postMessage({ channel: ops.id, text: 'x', blocks: actions(button('A', 'same'), button('B', 'same')) }), 'invalid_blocks');
  await rejectsWith(web.chat.postMessage({ channel: ops.id, text: 'x', blocks: actions(button('A', 'a'.repeat(256))) }), 'invalid_blocks');
  await rejectsWith(web.chat.postMessage({ channel: ops.id, text: 'x', blocks: actions(button('A', 'a', { value: 'v'.repeat(2001) })) }), 'invalid_blocks');
  await rejectsWith(web.chat.postMessage({ channel: ops.id, text: 'x', blocks: [...actions(button('A', 'a')), { type: 'divider' }, { type: 'section', text: { type: 'mrkdwn', text: 'x' } }].map((b) => ({ ...b, block_id: 'dup' })) }), 'invalid_blocks');
  const sections = Array.from({ length: 51 }, () => ({ type: 'divider' }));
  await rejectsWith(web.chat.postMessage({ channel: ops.id, text: 'x', blocks: sections }), 'invalid_blocks');
  await rejectsWith(web.chat.update({ channel: ops.id, ts: posted.ts!, text: 'x', blocks: actions(...many) }), 'invalid_blocks');

  // The same button text twice in one message is fine when each has its own block (a digest's per-incident buttons).
  await web.chat.update({ channel: ops.id, ts: posted.ts!, text: 'y', blocks: [...actions(button('Ack', 'ack')), ...actions(button('Ack', 'ack'))] });
  assert.equal(fake.messagesIn(ops.id).length, 1);
  assert.equal(fake.messagesIn(ops.id)[0]!.text, 'y');
});

test("usergroups.users.list answers a group's members, usergroups.list shows them only with include_users", async (t) => {
  const { fake, web } = await setup(t);
  const oncall = fake.addUsergroup({ handle: 'oncall', users: ['UALICE'] });
  fake.addUsergroup({ handle: 'empty' });

  assert.deepEqual((await web.usergroups.users.list({ usergroup: oncall.id })).users, ['UALICE']);
  fake.setUsergroupUsers(oncall.id, ['UBOB', 'UALICE']);
  assert.deepEqual((await web.usergroups.users.list({ usergroup: oncall.id })).users, ['UBOB', 'UALICE']);
  await rejectsWith(web.usergroups.users.list({ usergroup: 'SNONE' }), 'no_such_subteam');
  assert.deepEqual((await web.usergroups.list()).usergroups!.map((g) => [g.handle, g.users]), [['oncall', undefined], ['empty', undefined]]);
  assert.deepEqual((await web.usergroups.list({ include_users: true })).usergroups!.map((g) => [g.handle, g.users]), [['oncall', ['UBOB', 'UALICE']], ['empty', undefined]]);
});

// ───────────────────────────── Modals ─────────────────────────────

test('views.open exchanges a trigger_id once, keeps callback_id and private_metadata, and refuses an invalid view', async (t) => {
  const { fake, web, connect } = await setup(t);
  const ops = fake.addChannel({ name: 'ops' });
  await connect();
  const { trigger_id } = await fake.slash('UALICE', ops.id, 'resolve INC-1');

  const titled = await rejectsWith(web.views.open({ trigger_id: trigger_id!, view: modal([causeInput], { title: { type: 'plain_text', text: 'x'.repeat(25) } }) as any }), 'invalid_arguments');
  assert.deepEqual(titled.response_metadata.messages, ['[ERROR] must be less than 25 characters [json-pointer:/view/title/text]']);
  const dividers = Array.from({ length: 101 }, () => ({ type: 'divider' }));
  await rejectsWith(web.views.open({ trigger_id: trigger_id!, view: modal(dividers) as any }), 'invalid_arguments');
  await rejectsWith(web.views.open({ trigger_id: trigger_id!, view: modal([causeInput], { submit: undefined }) as any }), 'invalid_arguments');
  await rejectsWith(web.views.open({ trigger_id: trigger_id!, view: { ...modal([causeInput]), type: 'home' } as any }), 'invalid_arguments');

  const opened = await web.views.open({ trigger_id: trigger_id!, view: modal([causeInput, noteInput]) as any });
  const view = opened.view!;
  assert.match(view.id!, /^V/);
  assert.deepEqual([view.type, view.callback_id, view.private_metadata, view.root_view_id, view.previous_view_id], ['modal', 'resolve_incident', '{"incident":"INC-1"}', view.id, null]);
  await rejectsWith(web.views.open({ trigger_id: trigger_id!, view: modal([causeInput]) as any }), 'exchanged_trigger_id');
  await rejectsWith(web.views.open({ trigger_id: '1.2.abc', view: modal([causeInput]) as any }), 'invalid_trigger_id');
  assert.deepEqual(fake.openedViews().map((v) => [v.id, v.user, v.open]), [[view.id, 'UALICE', true]]);
});

test('a trigger_id older than triggerTtlMs is expired', async (t) => {
  const { fake, web, connect } = await setup(t, { triggerTtlMs: 100 });
  const ops = fake.addChannel({ name: 'ops' });
  await connect();
  const { trigger_id } = await fake.slash('UALICE', ops.id, 'resolve INC-1');

  await sleep(150);
  await rejectsWith(web.views.open({ trigger_id: trigger_id!, view: modal([causeInput]) as any }), 'expired_trigger_id');
  assert.deepEqual(fake.openedViews(), []);
});

test("submitView sends Slack's view_submission payload and applies the ack: errors keep the modal open, an empty ack closes it", async (t) => {
  const { fake, web, connect } = await setup(t);
  const ops = fake.addChannel({ name: 'ops' });
  const answers: Record<string, unknown>[] = [{ response_action: 'errors', errors: { cause: 'Say what caused it' } }, {}];
  // The app opens its modal from the slash command, as a real app does with the command's trigger_id.
  await connect(async (type, body) => {
    if (type === 'slash_commands') await web.views.open({ trigger_id: body.trigger_id, view: modal([causeInput, noteInput]) as any });
    return type === 'interactive' && body.type === 'view_submission' ? answers.shift()! : {};
  });
  await fake.slash('UALICE', ops.id, 'resolve INC-1');
  const [opened] = fake.openedViews();

  const first = await fake.submitView('UALICE', opened!.id, { cause: { cause_text: 'x' } });
  assert.deepEqual(first.ack, { response_action: 'errors', errors: { cause: 'Say what caused it' } });
  assert.deepEqual(first.payload, {
    type: 'view_submission',
    team: { id: 'T0FAKE', domain: 'fake' },
    user: { id: 'UALICE', username: 'alice', name: 'alice', team_id: 'T0FAKE' },
    api_app_id: 'A0FAKE',
    token: 'fake-verification-token',
    trigger_id: first.trigger_id,
    view: {
      id: opened!.id,
      team_id: 'T0FAKE',
      type: 'modal',
      title: { type: 'plain_text', text: 'Resolve INC-1' },
      close: null,
      submit: { type: 'plain_text', text: 'Resolve' },
      blocks: [causeInput, noteInput],
      private_metadata: '{"incident":"INC-1"}',
      callback_id: 'resolve_incident',
      state: { values: { cause: { cause_text: { type: 'plain_text_input', value: 'x' } }, note: { note_text: { type: 'plain_text_input', value: null } } } },
      hash: opened!.hash,
      clear_on_close: false,
      notify_on_close: false,
      root_view_id: opened!.id,
      previous_view_id: null,
      app_id: 'A0FAKE',
      external_id: '',
      app_installed_team_id: 'T0FAKE',
      bot_id: 'BBOT',
    },
    response_urls: [],
    is_enterprise_install: false,
    enterprise: null,
  });
  assert.deepEqual([fake.view(opened!.id)!.open, fake.view(opened!.id)!.errors], [true, { cause: 'Say what caused it' }]);

  await assert.rejects(fake.submitView('UALICE', opened!.id, {}), /Slack would not submit modal V\w+: the required input cause\/cause_text \("Cause"\) is empty/);
  await assert.rejects(fake.submitView('UALICE', opened!.id, { cause: { cause_text: 'disk' }, owner: { who: 'me' } }), /has no input owner\/who; its inputs are cause\/cause_text, note\/note_text/);
  await assert.rejects(fake.submitView('UBOB', opened!.id, { cause: { cause_text: 'disk' } }), /UBOB has no modal/);

  const second = await fake.submitView('UALICE', opened!.id, { cause: { cause_text: 'disk full' }, note: { note_text: 'rotated logs' } });
  assert.deepEqual(second.ack, {});
  assert.equal(fake.view(opened!.id)!.open, false);
  await assert.rejects(fake.submitView('UALICE', opened!.id, { cause: { cause_text: 'again' } }), /does not see modal .*: it is closed/);
});

test('a submission acked with response_action update or push changes the modal stack; views.push and views.update work on it', async (t) => {
  const { fake, web, connect } = await setup(t);
  const ops = fake.addChannel({ name: 'ops' });
  const confirm = modal([{ type: 'section', text: { type: 'mrkdwn', text: 'Resolved.' } }], { callback_id: 'done', submit: undefined });
  const answers: Record<string, unknown>[] = [{ response_action: 'push', view: modal([noteInput], { callback_id: 'more' }) }, { response_action: 'update', view: confirm }];
  await connect(async (type, body) => {
    if (type === 'slash_commands') await web.views.open({ trigger_id: body.trigger_id, view: modal([causeInput], { external_id: 'inc-1-resolve' }) as any });
    return body.type === 'view_submission' ? answers.shift()! : {};
  });
  const command = await fake.slash('UALICE', ops.id, 'resolve INC-1');
  const [root] = fake.openedViews();

  await fake.submitView('UALICE', root!.id, { cause: { cause_text: 'disk' } });
  const pushed = fake.openedViews()[1]!;
  assert.deepEqual([pushed.view.callback_id, pushed.root_view_id, pushed.previous_view_id, pushed.open], ['more', root!.id, root!.id, true]);
  await assert.rejects(fake.submitView('UALICE', root!.id, { cause: { cause_text: 'disk' } }), new RegExp(`${pushed.id} is on top of it`));

  await fake.submitView('UALICE', pushed.id, {});
  assert.deepEqual(fake.view(pushed.id)!.view, confirm);
  const stale = fake.view(root!.id)!.hash;
  const updated = await web.views.update({ external_id: 'inc-1-resolve', hash: stale, view: modal([causeInput], { external_id: 'inc-1-resolve', callback_id: 'again' }) as any });
  assert.equal(updated.view!.callback_id, 'again');
  await rejectsWith(web.views.update({ view_id: root!.id, hash: stale, view: modal([causeInput]) as any }), 'hash_conflict');
  await rejectsWith(web.views.update({ view_id: 'VNONE', view: modal([causeInput]) as any }), 'not_found');
  // The command's trigger was spent on views.open; views.push needs a fresh one, from an interaction in the modal.
  await rejectsWith(web.views.push({ trigger_id: command.trigger_id!, view: modal([noteInput]) as any }), 'exchanged_trigger_id');
});

test('views.push stacks views on the modal of the person whose click issued the trigger, at most 3, then push_limit_reached', async (t) => {
  const { fake, web, connect } = await setup(t);
  const ops = fake.addChannel({ name: 'ops' });
  const details = { type: 'section', text: { type: 'mrkdwn', text: 'Details' }, accessory: button('More', 'more') };
  const pushes: string[] = [];
  await connect(async (type, body) => {
    if (type === 'slash_commands') await web.views.open({ trigger_id: body.trigger_id, view: modal([details]) as any });
    if (body.type === 'block_actions') {
      const pushed = web.views.push({ trigger_id: body.trigger_id, view: modal([details], { callback_id: 'deeper' }) as any });
      pushes.push(await pushed.then((r) => r.view!.id!, (e) => e.data.error));
    }
    return {};
  });
  await fake.slash('UALICE', ops.id, 'resolve INC-1');
  const root = fake.openedViews()[0]!.id;

  const first = await fake.clickInView('UALICE', root, 'More');
  assert.deepEqual(first.payload.container, { type: 'view', view_id: root });
  await assert.rejects(fake.clickInView('UALICE', root, 'More'), new RegExp(`does not see modal ${root}: ${pushes[0]} is on top of it`));
  await fake.clickInView('UALICE', pushes[0]!, 'More');
  await fake.clickInView('UALICE', pushes[1]!, 'More');

  assert.deepEqual(pushes.slice(2), ['push_limit_reached']);
  assert.deepEqual(fake.openedViews().map((v) => [v.id, v.root_view_id, v.previous_view_id, v.view.callback_id]), [
    [root, root, null, 'resolve_incident'],
    [pushes[0], root, root, 'deeper'],
    [pushes[1], root, pushes[0], 'deeper'],
  ]);
});

// ───────────────────────────── The Home tab ─────────────────────────────

test('views.publish keeps the latest Home view per user and counts publishes; a modal, 101 blocks or no user are invalid_arguments', async (t) => {
  const { fake, web } = await setup(t);
  const home = (text: string) => ({ type: 'home', blocks: [{ type: 'section', text: { type: 'mrkdwn', text } }] });

  const first = await web.views.publish({ user_id: 'UALICE', view: home('2 incidents open') as any });
  const second = await web.views.publish({ user_id: 'UALICE', view: home('1 incident open') as any });
  assert.equal(second.view!.id, first.view!.id);
  assert.notEqual(second.view!.hash, first.view!.hash);
  assert.deepEqual(fake.homeView('UALICE')!.view, home('1 incident open'));
  assert.deepEqual([fake.homePublishes('UALICE'), fake.homePublishes('UBOB'), fake.homeView('UBOB')], [2, 0, undefined]);

  const tooMany = { type: 'home', blocks: Array.from({ length: 101 }, () => ({ type: 'divider' })) };
  const refused = await rejectsWith(web.views.publish({ user_id: 'UALICE', view: tooMany as any }), 'invalid_arguments');
  assert.deepEqual(refused.response_metadata.messages, ['[ERROR] no more than 100 items allowed [json-pointer:/view/blocks]']);
  await rejectsWith(web.views.publish({ user_id: 'UALICE', view: modal([]) as any }), 'invalid_arguments');
  await rejectsWith(web.views.publish({ user_id: 'UNOBODY', view: home('x') as any }), 'invalid_arguments');
  await rejectsWith(web.views.publish({ user_id: 'UALICE', hash: first.view!.hash, view: home('stale') as any }), 'hash_conflict');
  assert.equal(fake.homePublishes('UALICE'), 2);
});

test('openHome delivers app_home_opened with the published view and resolves after the ack; a Home button is clicked without a response_url', async (t) => {
  const { fake, web, connect } = await setup(t);
  const received = await connect();
  const opened = await fake.openHome('UALICE');
  assert.deepEqual(opened.payload, { type: 'app_home_opened', user: 'UALICE', channel: opened.payload.channel, tab: 'home', event_ts: opened.payload.event_ts });
  assert.match(opened.payload.channel, /^D/);
  assert.deepEqual(received.map((r) => [r.type, r.body.event]), [['events_api', opened.payload]]);

  const view = { type: 'home', blocks: [{ type: 'actions', block_id: 'home', elements: [button('Refresh', 'refresh')] }] };
  await web.views.publish({ user_id: 'UALICE', view: view as any });
  const again = await fake.openHome('UALICE');
  assert.equal(again.payload.channel, opened.payload.channel);
  assert.deepEqual(again.payload.view.blocks, view.blocks);
  assert.equal(again.payload.view.id, fake.homeView('UALICE')!.id);

  const click = await fake.clickInView('UALICE', fake.homeView('UALICE')!.id, 'Refresh');
  assert.deepEqual(click.payload.container, { type: 'view', view_id: fake.homeView('UALICE')!.id });
  assert.deepEqual(click.payload.view.blocks, view.blocks);
  assert.equal(click.response_url, undefined);
  assert.equal('response_url' in click.payload, false);
  assert.deepEqual(click.payload.actions.map((a: any) => a.action_id), ['refresh']);
});
