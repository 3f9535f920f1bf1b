// sdk_test.mjs - runs Cloudflare's official `cloudflare` npm SDK, unchanged, against the
// imagesfs Images API emulator and asserts every images call.
//
// Environment:
//   CLOUDFLARE_BASE_URL    http://127.0.0.1:PORT/client/v4 (the emulator's first stdout line)
//   CLOUDFLARE_API_TOKEN   a Bearer token the emulator accepts
//   CLOUDFLARE_ACCOUNT_ID  the emulator's account id
//   CLOUDFLARE_EMAIL, CLOUDFLARE_API_KEY  optional: an X-Auth-Email/X-Auth-Key pair it accepts
// Output: one line per check ("ok - ...", "FAIL - ...", "skip - ..."), then exactly
// "N passed, N failed". Exit status 1 when any check failed, 2 on a setup error.
//
// SDK quirks found while writing this (cloudflare 7.3.0), checked below where observable:
// * images.v1.list() returns a V4PagePagination page whose items are read from
//   `result.items`, but the API puts them in `result.images`. Iterating the SDK list with
//   `for await` therefore yields nothing (and never asks for page 2). The images are still
//   reachable as `page.result.images` on the awaited page.
// * multipart uploads (images.v1.create, images.v2.directUploads.create) encode a metadata
//   object as bracketed fields `metadata[key]=value` (every value stringified), not as the
//   JSON string the docs send; a JSON string passed as `metadata` is sent as-is. Nested
//   objects become `metadata[a][b]`, so only flat string maps survive the bracket form.
// * booleans in multipart bodies are sent as the text "true"/"false".
// * a file given as fs.createReadStream() (or toFile() without a type) is sent with part
//   Content-Type application/octet-stream; only toFile(..., {type}) or a typed File/Blob
//   carries image/png.
// * the SDK never looks at the envelope's `success` field: it unwraps `result` of any 2xx
//   JSON body, and maps errors by HTTP status only (404 -> NotFoundError etc.).
// * the client reads CLOUDFLARE_API_KEY / CLOUDFLARE_EMAIL from the environment by default
//   and would send them alongside the token, so every client here sets all auth options.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { File as NodeFile } from 'node:buffer';

// Node 18 has no global File, which the SDK needs for uploads.
if (typeof globalThis.File === 'undefined') globalThis.File = NodeFile;

const { default: Cloudflare, toFile, APIError, NotFoundError, ConflictError, AuthenticationError } =
	await import('cloudflare');

const BASE_URL = process.env.CLOUDFLARE_BASE_URL;
// Path prefix of the delivery base (the emulator serves delivery under /cdn; "" for
// imagedelivery.net itself).
const DELIVERY_PATH = process.env.IMAGES_DELIVERY_PATH || '';
const TOKEN = process.env.CLOUDFLARE_API_TOKEN;
const ACCOUNT = process.env.CLOUDFLARE_ACCOUNT_ID;
const AUTH_EMAIL = process.env.CLOUDFLARE_EMAIL;
const AUTH_KEY = process.env.CLOUDFLARE_API_KEY;
if (!BASE_URL || !TOKEN || !ACCOUNT) {
	console.error('sdk_test: set CLOUDFLARE_BASE_URL, CLOUDFLARE_API_TOKEN and CLOUDFLARE_ACCOUNT_ID');
	process.exit(2);
}
if (!/^http:\/\/127\.0\.0\.1:\d+\//.test(BASE_URL)) {
	console.error('sdk_test: CLOUDFLARE_BASE_URL must point at 127.0.0.1 (the emulator)');
	process.exit(2);
}

// ---- a fetch wrapper that remembers the last exchanges, printed when a check fails ----
const exchanges = [];
function describeBody(body) {
	if (body == null) return '';
	if (typeof body === 'string') return body.length > 400 ? body.slice(0, 400) + '...' : body;
	if (body instanceof FormData) {
		const parts = [];
		for (const [k, v] of body.entries()) {
			if (typeof v === 'string') parts.push(`${k}=${JSON.stringify(v)}`);
			else parts.push(`${k}=<file name=${JSON.stringify(v.name)} type=${v.type || '""'} ${v.size}B>`);
		}
		return `multipart{${parts.join(', ')}}`;
	}
	return `<${Object.prototype.toString.call(body)}>`;
}
async function recordingFetch(url, init = {}) {
	if (String(url).startsWith('data:')) return fetch(url, init); // the SDK's FormData probe
	const ex = { method: init.method || 'GET', url: String(url), req: describeBody(init.body) };
	exchanges.push(ex);
	if (exchanges.length > 6) exchanges.shift();
	const res = await fetch(url, init);
	ex.status = res.status;
	ex.ctype = res.headers.get('content-type');
	try {
		const buf = Buffer.from(await res.clone().arrayBuffer());
		ex.res = /json|text/.test(ex.ctype || '') ? buf.toString('utf8').slice(0, 600) : `<${buf.length} bytes>`;
	} catch (e) {
		ex.res = `<unreadable: ${e.message}>`;
	}
	return res;
}

function makeClient(auth) {
	return new Cloudflare({
		apiToken: null,
		apiEmail: null,
		apiKey: null,
		userServiceKey: null,
		...auth,
		baseURL: BASE_URL,
		maxRetries: 0,
		timeout: 20000,
		fetch: recordingFetch,
	});
}
const cf = makeClient({ apiToken: TOKEN });
const acct = { account_id: ACCOUNT };

// ---- check harness ----
let passed = 0;
let failed = 0;
class Skip extends Error {}
async function check(name, fn) {
	exchanges.length = 0;
	try {
		await fn();
		passed++;
		console.log(`ok - ${name}`);
	} catch (e) {
		if (e instanceof Skip) {
			console.log(`skip - ${name}: ${e.message}`);
			return;
		}
		failed++;
		const msg = (e && e.message ? e.message : String(e)).split('\n').slice(0, 12).join('\n#   ');
		console.log(`FAIL - ${name}: ${msg}`);
		for (const ex of exchanges)
			console.log(`#   ${ex.method} ${ex.url} ${ex.req}\n#   -> ${ex.status} ${ex.ctype} ${ex.res}`);
	}
}

// Runs fn, which must reject with an SDK error of class Cls and status; returns the error.
async function expectApiError(fn, Cls, status) {
	let err = null;
	try {
		await fn();
	} catch (e) {
		err = e;
	}
	assert.ok(err, `expected ${Cls.name} (${status}), the call succeeded`);
	if (!(err instanceof APIError)) throw err;
	assert.ok(err instanceof Cls, `expected ${Cls.name}, got ${err.constructor.name} ${err.message}`);
	if (status !== undefined) assert.equal(err.status, status);
	return err;
}
// A 4xx refusal for the reason under test, not an authentication or permission failure.
function assertRefused(err) {
	assert.ok(err.status >= 400 && err.status < 500 && err.status !== 401 && err.status !== 403,
		`expected a 4xx refusal, got ${err.status} ${err.message}`);
	assert.ok(err.errors.length > 0 && Number.isInteger(err.errors[0].code), 'no error code');
	console.log(`#   refused: ${err.status} code ${err.errors[0].code} ${JSON.stringify(err.errors[0].message)}`);
}
function errCode(err) {
	assert.ok(Array.isArray(err.errors) && err.errors.length > 0, 'error body has no errors[]');
	return err.errors[0].code;
}

// ---- a small valid PNG, different bytes for each seed ----
const CRC_TABLE = (() => {
	const t = new Uint32Array(256);
	for (let n = 0; n < 256; n++) {
		let c = n;
		for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
		t[n] = c >>> 0;
	}
	return t;
})();
function crc32(buf) {
	let c = 0xffffffff;
	for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
	return (c ^ 0xffffffff) >>> 0;
}
function chunk(type, data) {
	const len = Buffer.alloc(4);
	len.writeUInt32BE(data.length);
	const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
	const crc = Buffer.alloc(4);
	crc.writeUInt32BE(crc32(td));
	return Buffer.concat([len, td, crc]);
}
function makePng(seed, w = 4, h = 3) {
	const ihdr = Buffer.alloc(13);
	ihdr.writeUInt32BE(w, 0);
	ihdr.writeUInt32BE(h, 4);
	ihdr[8] = 8; // bit depth
	ihdr[9] = 2; // RGB
	const raw = Buffer.alloc(h * (1 + 3 * w));
	for (let y = 0; y < h; y++)
		for (let x = 0; x < w; x++) {
			const o = y * (1 + 3 * w) + 1 + 3 * x;
			raw[o] = (seed * 37 + x) & 0xff;
			raw[o + 1] = (seed * 11 + y) & 0xff;
			raw[o + 2] = (seed * 101) & 0xff;
		}
	return Buffer.concat([
		Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
		chunk('IHDR', ihdr),
		chunk('IDAT', zlib.deflateSync(raw)),
		chunk('IEND', Buffer.alloc(0)),
	]);
}

const ISO_MS = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const UUIDISH = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
function assertUploadedRecent(img) {
	assert.match(img.uploaded, ISO_MS, 'uploaded is ISO 8601 with milliseconds and Z');
	const t = Date.parse(img.uploaded);
	assert.ok(Math.abs(Date.now() - t) < 10 * 60 * 1000, `uploaded ${img.uploaded} is not recent`);
}
function assertVariantUrls(img) {
	assert.ok(Array.isArray(img.variants) && img.variants.length > 0, 'variants[] is empty');
	for (const u of img.variants) {
		assert.equal(typeof u, 'string');
		const url = new URL(u);
		assert.ok(url.pathname.startsWith(DELIVERY_PATH + '/'), u);
		const parts = url.pathname.slice(DELIVERY_PATH.length).split('/');
		// /<account hash>/<image id (may contain '/')>/<variant>
		assert.ok(parts.length >= 4 && parts[1].length > 0, `bad delivery URL ${u}`);
		assert.equal(decodeURIComponent(parts.slice(2, -1).join('/')), img.id, `URL ${u} does not carry id`);
		assert.match(parts[parts.length - 1], /^[A-Za-z0-9_-]+$/, `bad variant name in ${u}`);
	}
	assert.ok(img.variants.some((u) => u.endsWith('/public')), 'no public variant URL');
}
function variantNames(img) {
	return img.variants.map((u) => u.slice(u.lastIndexOf('/') + 1));
}

async function blobBytes(id) {
	const res = await cf.images.v1.blobs.get(id, acct);
	assert.ok(res instanceof Response, 'blobs.get did not return a Response');
	return { ctype: res.headers.get('content-type'), bytes: Buffer.from(await res.arrayBuffer()) };
}

// ---- a local origin for upload-by-URL ----
const REMOTE_PNG = makePng(200, 5, 5);
let originHits = 0;
const origin = http.createServer((req, res) => {
	originHits++;
	if (req.url === '/img/remote.png') {
		res.writeHead(200, { 'content-type': 'image/png', 'content-length': REMOTE_PNG.length });
		res.end(REMOTE_PNG);
	} else {
		res.writeHead(404, { 'content-type': 'text/plain' });
		res.end('not found');
	}
});
await new Promise((resolve, reject) => {
	origin.once('error', reject);
	origin.listen(0, '127.0.0.1', resolve);
});
const ORIGIN = `http://127.0.0.1:${origin.address().port}`;
const tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagesfs-sdk-'));

// ---- the checks ----
const run = Date.now().toString(36);
const CUSTOM_ID = `sdk/${run}/first.png`; // '/' in an id: the SDK sends it as %2F
const PNG1 = makePng(1);
const META1 = { owner: 'sdk', purpose: 'conformance test' };
let first = null;
let generated = null;
let remote = null;
let streamed = null;
const allIds = new Set();

await check('images.v1.create with file, id, metadata object, requireSignedURLs=false, creator', async () => {
	const img = await cf.images.v1.create({
		...acct,
		file: await toFile(PNG1, 'sdk-first.png', { type: 'image/png' }),
		id: CUSTOM_ID,
		metadata: META1,
		requireSignedURLs: false,
		creator: 'sdk-creator',
	});
	first = img;
	allIds.add(img.id);
	assert.equal(img.id, CUSTOM_ID);
	assert.equal(img.filename, 'sdk-first.png');
	assert.deepEqual(img.meta, META1);
	assert.equal(img.creator, 'sdk-creator');
	assert.equal(img.requireSignedURLs, false);
	assertUploadedRecent(img);
	assertVariantUrls(img);
});

await check('images.v1.create with metadata as a JSON string (docs wire format, typed values)', async () => {
	const meta = { n: 42, ok: true, nested: { list: [1, 'two'] }, s: 'x' };
	const img = await cf.images.v1.create({
		...acct,
		file: await toFile(makePng(2), 'json-meta.png', { type: 'image/png' }),
		metadata: JSON.stringify(meta),
	});
	allIds.add(img.id);
	assert.match(img.id, UUIDISH, 'generated id is UUID-shaped');
	assert.deepEqual(img.meta, meta);
	assert.equal(img.requireSignedURLs, false, 'requireSignedURLs defaults to false');
	assert.ok(img.creator === undefined || img.creator === null, `creator unset, got ${img.creator}`);
	generated = img;
});

const STREAM_PNG = makePng(3, 7, 2);
await check('images.v1.create with fs.createReadStream (part type application/octet-stream)', async () => {
	const p = path.join(tmpDir, 'streamed.png');
	fs.writeFileSync(p, STREAM_PNG);
	const img = await cf.images.v1.create({ ...acct, file: fs.createReadStream(p) });
	allIds.add(img.id);
	assert.equal(img.filename, 'streamed.png');
	assertUploadedRecent(img);
	streamed = img;
});

await check('images.v1.create with url (local origin)', async () => {
	const before = originHits;
	const img = await cf.images.v1.create({ ...acct, url: `${ORIGIN}/img/remote.png`, creator: 'sdk-url' });
	allIds.add(img.id);
	assert.ok(originHits > before, 'the emulator never fetched the URL');
	assert.equal(typeof img.id, 'string');
	assert.equal(typeof img.filename, 'string');
	assert.equal(img.creator, 'sdk-url');
	assertUploadedRecent(img);
	assertVariantUrls(img);
	remote = img;
});

await check('images.v1.create with a url the origin answers 404 -> 4xx error', async () => {
	const err = await expectApiError(
		() => cf.images.v1.create({ ...acct, url: `${ORIGIN}/img/missing.png` }),
		APIError,
	);
	assertRefused(err);
});

await check('images.v1.get returns what create returned', async () => {
	assert.ok(first, 'no image from the first create');
	const img = await cf.images.v1.get(CUSTOM_ID, acct);
	assert.deepEqual(img, first);
});

await check('images.v1.blobs.get returns the exact uploaded bytes (file, stream, url)', async () => {
	assert.ok(first && streamed && remote, 'earlier uploads missing');
	let b = await blobBytes(first.id);
	assert.ok(b.bytes.equals(PNG1), `blob differs: ${b.bytes.length} vs ${PNG1.length} bytes`);
	assert.match(b.ctype || '', /^image\/png/);
	b = await blobBytes(streamed.id);
	assert.ok(b.bytes.equals(STREAM_PNG), 'streamed blob differs');
	b = await blobBytes(remote.id);
	assert.ok(b.bytes.equals(REMOTE_PNG), 'url-uploaded blob differs');
});

await check('images.v1.edit metadata, creator, requireSignedURLs on a generated-id image', async () => {
	assert.ok(generated, 'no generated-id image');
	const id = generated.id;
	const img = await cf.images.v1.edit(id, {
		...acct,
		metadata: { edited: 'yes', n: 7 },
		creator: 'sdk-editor',
		requireSignedURLs: true,
	});
	assert.equal(img.id, id);
	assert.deepEqual(img.meta, { edited: 'yes', n: 7 });
	assert.equal(img.creator, 'sdk-editor');
	assert.equal(img.requireSignedURLs, true);
	assert.equal(img.filename, generated.filename);
	assert.equal(img.uploaded, generated.uploaded);
	const got = await cf.images.v1.get(id, acct);
	assert.deepEqual(got, img);
	// fields left out of the PATCH stay as they are
	const back = await cf.images.v1.edit(id, { ...acct, requireSignedURLs: false });
	assert.equal(back.requireSignedURLs, false);
	assert.deepEqual(back.meta, { edited: 'yes', n: 7 });
	assert.equal(back.creator, 'sdk-editor');
});

await check('images.v1.edit requireSignedURLs=true on a custom-id image is refused (4xx)', async () => {
	const err = await expectApiError(
		() => cf.images.v1.edit(CUSTOM_ID, { ...acct, requireSignedURLs: true }),
		APIError,
	);
	assertRefused(err);
	const img = await cf.images.v1.get(CUSTOM_ID, acct);
	assert.equal(img.requireSignedURLs, false);
});

await check('upload with a duplicate custom id -> ConflictError 409, code 5409', async () => {
	const err = await expectApiError(
		async () =>
			cf.images.v1.create({
				...acct,
				file: await toFile(makePng(4), 'dup.png', { type: 'image/png' }),
				id: CUSTOM_ID,
			}),
		ConflictError,
		409,
	);
	assert.equal(errCode(err), 5409);
	const b = await blobBytes(CUSTOM_ID);
	assert.ok(b.bytes.equals(PNG1), 'the duplicate upload replaced the original bytes');
});

// bulk images for paging (the run so far made 4; 24 more -> at least 28)
const BULK = 24;
await check(`upload ${BULK} more images for paging`, async () => {
	for (let i = 0; i < BULK; i++) {
		const img = await cf.images.v1.create({
			...acct,
			file: await toFile(makePng(10 + i, 2, 2), `bulk-${i}.png`, { type: 'image/png' }),
			id: `sdk/${run}/bulk-${String(i).padStart(2, '0')}`,
			creator: 'sdk-bulk',
		});
		allIds.add(img.id);
	}
	assert.ok(allIds.size >= 25, `only ${allIds.size} images`);
});

await check('images.v1.list (page object; SDK iteration quirk documented)', async () => {
	const page = await cf.images.v1.list({ ...acct, per_page: 100 });
	const raw = page.result && page.result.images;
	assert.ok(Array.isArray(raw), 'result.images is not an array');
	const ids = new Set(raw.map((i) => i.id));
	for (const id of allIds) assert.ok(ids.has(id), `v1 list misses ${id}`);
	// SDK quirk: the page reads result.items, so auto-pagination yields nothing. Iterate
	// (bounded) to prove the call path works; whatever it yields must be real images.
	let n = 0;
	for await (const item of cf.images.v1.list({ ...acct, per_page: 100 })) {
		assert.ok(item && typeof item === 'object');
		if (++n > 5000) break;
	}
	console.log(`#   v1.list: result.images has ${raw.length} images; SDK iteration yielded ${n} items`);
});

await check('images.v1.list creator filter', async () => {
	const page = await cf.images.v1.list({ ...acct, per_page: 100, creator: 'sdk-bulk' });
	const raw = page.result.images;
	assert.equal(raw.length, BULK);
	for (const i of raw) assert.equal(i.creator, 'sdk-bulk');
});

await check('images.v1.list page/per_page paging (read through page.result.images)', async () => {
	const p1 = await cf.images.v1.list({ ...acct, page: 1, per_page: 10 });
	const p2 = await cf.images.v1.list({ ...acct, page: 2, per_page: 10 });
	const a = p1.result.images.map((i) => i.id);
	const b = p2.result.images.map((i) => i.id);
	assert.equal(a.length, 10);
	assert.equal(b.length, 10);
	assert.ok(!a.some((id) => b.includes(id)), 'pages 1 and 2 overlap');
	const far = await cf.images.v1.list({ ...acct, page: 1000, per_page: 10 });
	assert.deepEqual(far.result.images, []);
});

let ascIds = null;
await check('images.v2.list per_page=10 with continuation_token, sort_order asc', async () => {
	const seen = [];
	let token;
	let pages = 0;
	let lastUploaded = '';
	do {
		const r = await cf.images.v2.list({
			...acct,
			per_page: 10,
			sort_order: 'asc',
			...(token ? { continuation_token: token } : {}),
		});
		pages++;
		assert.ok(Array.isArray(r.images), 'images[] missing');
		assert.ok(r.images.length <= 10, `page of ${r.images.length} > per_page`);
		for (const img of r.images) {
			assert.ok(img.uploaded >= lastUploaded, `asc order broken at ${img.id}`);
			lastUploaded = img.uploaded;
			seen.push(img.id);
		}
		token = r.continuation_token;
		assert.ok(token === null || token === undefined || (typeof token === 'string' && token.length > 0));
		if (token) assert.equal(r.images.length, 10, 'a non-final page is short');
	} while (token && pages < 50);
	assert.ok(!token, 'still paging after 50 pages');
	assert.ok(pages >= 3, `only ${pages} pages for ${seen.length} images`);
	assert.equal(new Set(seen).size, seen.length, 'an image appeared twice');
	for (const id of allIds) assert.ok(seen.includes(id), `v2 list misses ${id}`);
	ascIds = seen;
});

await check('images.v2.list sort_order desc is the reverse of asc', async () => {
	assert.ok(ascIds, 'asc listing failed');
	const seen = [];
	let token;
	let pages = 0;
	do {
		const r = await cf.images.v2.list({ ...acct, per_page: 10, sort_order: 'desc', continuation_token: token });
		pages++;
		for (const img of r.images) seen.push(img.id);
		token = r.continuation_token;
	} while (token && pages < 50);
	assert.deepEqual(seen, [...ascIds].reverse());
	const dflt = await cf.images.v2.list({ ...acct, per_page: 10 });
	assert.deepEqual(
		dflt.images.map((i) => i.id),
		seen.slice(0, 10),
		'default sort_order is not desc',
	);
});

await check('images.v2.list creator filter', async () => {
	const r = await cf.images.v2.list({ ...acct, per_page: 100, creator: 'sdk-creator' });
	assert.deepEqual(r.images.map((i) => i.id), [CUSTOM_ID]);
	assert.ok(!r.continuation_token);
});

await check('images.v2.list metadata filter meta.<field>[eq] (SDK sends meta.owner%5Beq%5D)', async () => {
	// The SDK types `meta` as {'<field>[<operator>]': string}; its query encoder turns
	// {meta: {'owner[eq]': 'sdk'}} into meta.owner[eq]=sdk, the API's documented form.
	const r = await cf.images.v2.list({ ...acct, per_page: 100, meta: { 'owner[eq]': 'sdk' } });
	assert.deepEqual(r.images.map((i) => i.id), [CUSTOM_ID], 'meta filter not applied');
	const none = await cf.images.v2.list({ ...acct, per_page: 100, meta: { 'owner[eq]': 'nobody' } });
	assert.deepEqual(none.images, []);
	const err = await expectApiError(
		() => cf.images.v2.list({ ...acct, per_page: 100, meta: { 'owner[not-eq]': 'sdk' } }),
		APIError,
		400,
	);
	assert.equal(errCode(err), 5400);
});

await check('images.v1.stats.get counts the images', async () => {
	const s = await cf.images.v1.stats.get(acct);
	assert.equal(typeof s.count.allowed, 'number');
	assert.equal(typeof s.count.current, 'number');
	assert.equal(s.count.current, ascIds ? ascIds.length : allIds.size);
	assert.ok(s.count.allowed >= s.count.current);
});

await check('images.v1.delete then get -> NotFoundError 404, code 5404', async () => {
	assert.ok(streamed, 'no image to delete');
	const before = (await cf.images.v1.stats.get(acct)).count.current;
	const r = await cf.images.v1.delete(streamed.id, acct);
	assert.deepEqual(r, {});
	allIds.delete(streamed.id);
	let err = await expectApiError(() => cf.images.v1.get(streamed.id, acct), NotFoundError, 404);
	assert.equal(errCode(err), 5404);
	err = await expectApiError(() => cf.images.v1.blobs.get(streamed.id, acct), NotFoundError, 404);
	err = await expectApiError(() => cf.images.v1.delete(streamed.id, acct), NotFoundError, 404);
	assert.equal(errCode(err), 5404);
	const after = (await cf.images.v1.stats.get(acct)).count.current;
	assert.equal(after, before - 1);
});

await check('images.v1.delete of a custom id containing "/"', async () => {
	const id = `sdk/${run}/bulk-00`;
	assert.deepEqual(await cf.images.v1.delete(id, acct), {});
	allIds.delete(id);
	await expectApiError(() => cf.images.v1.get(id, acct), NotFoundError, 404);
	const img = await cf.images.v1.get(`sdk/${run}/bulk-01`, acct);
	assert.equal(img.id, `sdk/${run}/bulk-01`);
});

// ---- signing keys ----
function keyMap(r) {
	assert.ok(r && Array.isArray(r.keys), 'keys[] missing');
	const m = new Map();
	for (const k of r.keys) {
		assert.equal(typeof k.name, 'string');
		assert.equal(typeof k.value, 'string');
		assert.ok(k.value.length >= 16, `key ${k.name} value too short`);
		m.set(k.name, k.value);
	}
	return m;
}
let defaultKey = null;
await check('images.v1.keys.list has a default key', async () => {
	const m = keyMap(await cf.images.v1.keys.list(acct));
	assert.ok(m.has('default'), 'no default key');
	defaultKey = m.get('default');
});

await check('images.v1.keys.update (PUT) adds a key and returns all keys', async () => {
	const m = keyMap(await cf.images.v1.keys.update('sdkKey1', acct));
	assert.ok(m.has('sdkKey1') && m.has('default'), `keys: ${[...m.keys()]}`);
	assert.notEqual(m.get('sdkKey1'), m.get('default'));
	const l = keyMap(await cf.images.v1.keys.list(acct));
	assert.deepEqual(l, m);
});

await check('images.v1.keys.delete returns the remaining keys', async () => {
	const m = keyMap(await cf.images.v1.keys.delete('sdkKey1', acct));
	assert.ok(!m.has('sdkKey1'));
	assert.ok(m.has('default'));
	assert.deepEqual(keyMap(await cf.images.v1.keys.list(acct)), m);
});

await check('deleting every key regenerates a new default key', async () => {
	keyMap(await cf.images.v1.keys.update('sdkKey2', acct));
	const names = [...keyMap(await cf.images.v1.keys.list(acct)).keys()];
	assert.ok(names.length >= 2);
	let last = null;
	for (const n of names) last = keyMap(await cf.images.v1.keys.delete(n, acct));
	assert.deepEqual([...last.keys()], ['default'], `after deleting all: ${[...last.keys()]}`);
	assert.notEqual(last.get('default'), defaultKey, 'default key was not regenerated');
	assert.deepEqual(keyMap(await cf.images.v1.keys.list(acct)), last);
});

// ---- variants ----
const VOPT1 = { fit: 'cover', metadata: 'none', width: 120, height: 80 };
const VOPT2 = { fit: 'scale-down', metadata: 'keep', width: 640, height: 480 };
const VID = `sdkv${run.replace(/[^a-z0-9]/gi, '')}`.slice(0, 40);
await check('images.v1.variants.list contains public', async () => {
	const r = await cf.images.v1.variants.list(acct);
	assert.ok(r && r.variants && typeof r.variants === 'object', 'variants map missing');
	assert.ok(r.variants.public, 'no public variant');
	assert.equal(r.variants.public.id, 'public');
});

await check('images.v1.variants.create', async () => {
	const r = await cf.images.v1.variants.create({ ...acct, id: VID, options: VOPT1, neverRequireSignedURLs: true });
	assert.deepEqual(r.variant, { id: VID, options: VOPT1, neverRequireSignedURLs: true });
	const img = await cf.images.v1.get(CUSTOM_ID, acct);
	assert.ok(variantNames(img).includes(VID), `image variants[] lacks ${VID}: ${img.variants}`);
	assertVariantUrls(img);
});

await check('images.v1.variants.create of an existing id fails (4xx)', async () => {
	const err = await expectApiError(
		() => cf.images.v1.variants.create({ ...acct, id: VID, options: VOPT2 }),
		APIError,
	);
	assertRefused(err);
});

await check('images.v1.variants.get', async () => {
	const r = await cf.images.v1.variants.get(VID, acct);
	assert.deepEqual(r.variant, { id: VID, options: VOPT1, neverRequireSignedURLs: true });
});

await check('images.v1.variants.edit', async () => {
	const r = await cf.images.v1.variants.edit(VID, { ...acct, options: VOPT2, neverRequireSignedURLs: false });
	assert.deepEqual(r.variant, { id: VID, options: VOPT2, neverRequireSignedURLs: false });
	const g = await cf.images.v1.variants.get(VID, acct);
	assert.deepEqual(g.variant, r.variant);
});

await check('images.v1.variants.list contains the new variant', async () => {
	const r = await cf.images.v1.variants.list(acct);
	assert.deepEqual(r.variants[VID], { id: VID, options: VOPT2, neverRequireSignedURLs: false });
	for (const [k, v] of Object.entries(r.variants)) assert.equal(v.id, k);
});

await check('images.v1.variants.delete, then get -> NotFoundError 404', async () => {
	assert.deepEqual(await cf.images.v1.variants.delete(VID, acct), {});
	const err = await expectApiError(() => cf.images.v1.variants.get(VID, acct), NotFoundError, 404);
	console.log(`#   unknown variant error code ${errCode(err)}`);
	const r = await cf.images.v1.variants.list(acct);
	assert.ok(!(VID in r.variants));
	const img = await cf.images.v1.get(CUSTOM_ID, acct);
	assert.ok(!variantNames(img).includes(VID), 'deleted variant still in image variants[]');
});

await check('images.v1.variants.delete("public") is refused', async () => {
	const err = await expectApiError(() => cf.images.v1.variants.delete('public', acct), APIError);
	assertRefused(err);
	const r = await cf.images.v1.variants.get('public', acct);
	assert.equal(r.variant.id, 'public');
});

// ---- auth ----
await check('bad token -> AuthenticationError 401', async () => {
	const bad = makeClient({ apiToken: `${TOKEN}-wrong` });
	const err = await expectApiError(() => bad.images.v1.stats.get(acct), AuthenticationError, 401);
	console.log(`#   bad token error code ${errCode(err)}`);
});

await check('X-Auth-Email + X-Auth-Key (apiEmail/apiKey) auth works', async () => {
	if (!AUTH_EMAIL || !AUTH_KEY) throw new Skip('CLOUDFLARE_EMAIL/CLOUDFLARE_API_KEY not set');
	const kc = makeClient({ apiEmail: AUTH_EMAIL, apiKey: AUTH_KEY });
	const img = await kc.images.v1.get(CUSTOM_ID, acct);
	assert.equal(img.id, CUSTOM_ID);
	const bad = makeClient({ apiEmail: AUTH_EMAIL, apiKey: `${AUTH_KEY}x` });
	await expectApiError(() => bad.images.v1.get(CUSTOM_ID, acct), AuthenticationError, 401);
});

await check('wrong account id -> 4xx error (not 401: the token is valid)', async () => {
	const err = await expectApiError(
		() => cf.images.v1.stats.get({ account_id: 'ffffffffffffffffffffffffffffffff' }),
		APIError,
	);
	// The real API answers 7003 (no route) or a 403 permission error; both are fine here.
	assert.ok(err.status >= 400 && err.status < 500 && err.status !== 401, `status ${err.status}`);
	console.log(`#   wrong account: ${err.status} code ${errCode(err)}`);
});

// ---- direct upload v2 ----
await check('images.v2.directUploads.create, then an unauthenticated POST of the file to uploadURL', async () => {
	const expiry = new Date(Date.now() + 3600 * 1000).toISOString();
	const r = await cf.images.v2.directUploads.create({
		...acct,
		metadata: { via: 'direct' },
		requireSignedURLs: false,
		creator: 'sdk-direct',
		expiry,
	});
	assert.deepEqual(Object.keys(r).sort(), ['id', 'uploadURL']);
	assert.match(r.id, UUIDISH, 'generated direct-upload id is UUID-shaped');
	const u = new URL(r.uploadURL);
	assert.equal(u.host, new URL(BASE_URL).host, `uploadURL ${r.uploadURL} is not on the emulator`);
	assert.ok(r.uploadURL.endsWith(`/${r.id}`), `uploadURL ${r.uploadURL} does not end with the id`);
	const draft = await cf.images.v1.get(r.id, acct);
	assert.equal(draft.id, r.id);
	assert.equal(draft.draft, true, 'a fresh direct upload is not a draft');
	assert.deepEqual(draft.meta, { via: 'direct' });
	assert.equal(draft.creator, 'sdk-direct');
	const listed = await cf.images.v2.list({ ...acct, per_page: 100 });
	assert.ok(!listed.images.some((i) => i.id === r.id), 'a draft appears in the v2 list');
	const listed1 = await cf.images.v1.list({ ...acct, per_page: 100 });
	assert.ok(!listed1.result.images.some((i) => i.id === r.id), 'a draft appears in the v1 list');
	const countBefore = (await cf.images.v1.stats.get(acct)).count.current;

	// the browser side: a plain multipart POST, no credentials
	const form = new FormData();
	const bytes = makePng(99);
	form.append('file', new File([bytes], 'direct.png', { type: 'image/png' }));
	const up = await fetch(r.uploadURL, { method: 'POST', body: form });
	const upBody = await up.json();
	assert.equal(up.status, 200, `direct upload POST -> ${up.status} ${JSON.stringify(upBody)}`);
	assert.equal(upBody.success, true);
	assert.equal(upBody.result.id, r.id);

	const done = await cf.images.v1.get(r.id, acct);
	assert.ok(!('draft' in done), 'still a draft after the upload');
	assert.equal(done.filename, 'direct.png');
	assert.deepEqual(done.meta, { via: 'direct' });
	assert.equal(done.creator, 'sdk-direct');
	assert.equal(done.requireSignedURLs, false);
	assertUploadedRecent(done);
	assertVariantUrls(done);
	assert.deepEqual(done, upBody.result, 'get differs from the upload reply');
	const b = await blobBytes(r.id);
	assert.ok(b.bytes.equals(bytes), `blob differs: ${b.bytes.length} vs ${bytes.length} bytes`);
	assert.match(b.ctype || '', /^image\/png/);
	const after = await cf.images.v2.list({ ...acct, per_page: 100 });
	assert.ok(after.images.some((i) => i.id === r.id), 'the completed image is not listed');
	assert.equal((await cf.images.v1.stats.get(acct)).count.current, countBefore + 1);

	// the URL is one-time
	const again = new FormData();
	again.append('file', new File([makePng(98)], 'again.png', { type: 'image/png' }));
	const up2 = await fetch(r.uploadURL, { method: 'POST', body: again });
	const up2Body = await up2.json();
	assert.ok(up2.status >= 400 && up2.status < 500, `second POST to uploadURL -> ${up2.status}`);
	assert.equal(up2Body.success, false);
	console.log(`#   second POST: ${up2.status} code ${up2Body.errors[0].code} ${JSON.stringify(up2Body.errors[0].message)}`);
	assert.ok((await blobBytes(r.id)).bytes.equals(bytes), 'a second POST replaced the bytes');
	await cf.images.v1.delete(r.id, acct);
});

await check('images.v2.directUploads.create with a custom id; duplicate -> ConflictError 409', async () => {
	const id = `sdk/${run}/direct`;
	const r = await cf.images.v2.directUploads.create({ ...acct, id });
	assert.equal(r.id, id);
	assert.ok(r.uploadURL.endsWith(`/${encodeURIComponent(id)}`), `uploadURL ${r.uploadURL}`);
	const err = await expectApiError(() => cf.images.v2.directUploads.create({ ...acct, id }), ConflictError, 409);
	assert.equal(errCode(err), 5409);
	const draft = await cf.images.v1.get(id, acct);
	assert.equal(draft.draft, true);
	assert.deepEqual(await cf.images.v1.delete(id, acct), {});
	await expectApiError(() => cf.images.v1.get(id, acct), NotFoundError, 404);
});

await check('images.v2.directUploads.create with an expiry beyond 6 hours -> 400', async () => {
	const err = await expectApiError(
		() => cf.images.v2.directUploads.create({ ...acct, expiry: new Date(Date.now() + 7 * 3600 * 1000).toISOString() }),
		APIError,
		400,
	);
	assert.equal(errCode(err), 5400);
});

// ---- cleanup of local things ----
origin.close();
fs.rmSync(tmpDir, { recursive: true, force: true });
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
