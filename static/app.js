// The page's behaviour: a drawing pad, choosing, dropping or pasting an image,
// and the result shown in place. Without JavaScript the form posts to the
// server, which renders the same result from the same markup (templates/_result.html).

const form = document.getElementById("upload-form");
const fileInput = document.getElementById("file");
const preview = document.getElementById("preview");
const dropZone = document.getElementById("drop-zone");
const resultPanel = document.getElementById("result");
const statusRegion = document.getElementById("status");
const details = document.getElementById("details");
const canvas = document.getElementById("pad");
const penMarker = document.getElementById("pen");
const context = canvas.getContext("2d");
const predictUrl = form.dataset.predictUrl;
const explainToggle = document.getElementById("explain");

// ---- Showing results ------------------------------------------------------

// One decimal, but never "100.0%" for a probability below 1 (0.9996 shows 99.9%).
function percent(value) {
  let tenths = Math.round(value * 1000);
  if (tenths >= 1000 && value < 1) tenths = 999;
  return `${(tenths / 10).toFixed(1)}%`;
}

function reasonWords(reason) {
  const words = document.getElementById("reasons-template").content
    .querySelector(`[data-reason="${reason}"]`);
  return words ? words.textContent : reason;
}

// Server messages are lower-case phrases; the page shows them as sentences.
function sentence(text) {
  const capital = text.charAt(0).toUpperCase() + text.slice(1);
  return /[.!?]$/.test(capital) ? capital : `${capital}.`;
}

function cloneTemplate(id) {
  return document.getElementById(id).content.cloneNode(true);
}

function showResult(body, milliseconds) {
  const several = body.digits.length > 1;
  const verdict = cloneTemplate("verdict-template");
  const label = body.uncertain ? "Best guess" : several ? "The number is" : "The digit is";
  verdict.querySelector("#verdict-label").textContent = label;
  verdict.querySelector("#prediction").textContent = several ? body.number : String(body.prediction);
  verdict.querySelector(".confidence-label").textContent = several ? "Least sure digit" : "Confidence";
  const leastSure = Math.min(...body.digits.map((digit) => digit.confidence));
  verdict.querySelector("#confidence strong").textContent = percent(several ? leastSure : body.confidence);
  if (body.uncertain) {
    verdict.querySelector(".verdict").classList.add("unsure");
    const doubt = verdict.querySelector("#doubt");
    doubt.textContent = `Not sure: ${reasonWords(body.reason)}.`;
    doubt.hidden = false;
  }

  const more = cloneTemplate("details-template");
  more.querySelector("#digits-heading").hidden = !several;
  const digitList = more.querySelector("#digits");
  digitList.hidden = !several;
  if (several) {
    for (const digit of body.digits) {
      const item = document.createElement("li");
      const value = document.createElement("span");
      value.className = "digit";
      value.textContent = String(digit.value);
      const sure = document.createElement("span");
      sure.className = "percent";
      sure.textContent = percent(digit.confidence);
      item.append(value, " ", sure);
      digitList.append(item);
    }
    more.querySelector("#input-caption").textContent =
      "The surest digit as the model saw it (28 × 28)";
  }
  more.querySelector("#input-image").src = body.input_image;
  if (body.explanation) {
    more.querySelector("#explanation").src = body.explanation;
    more.querySelector("#explanation").hidden = false;
    more.querySelector("#legend").hidden = false;
  }
  const timing = more.querySelector("#timing");
  timing.textContent = `Answered in ${Math.round(milliseconds)} ms`;
  timing.hidden = false;
  more.querySelectorAll("#probabilities li").forEach((item, digit) => {
    const probability = body.probabilities[digit];
    item.classList.toggle("top", digit === body.prediction);
    item.querySelector("meter").value = probability;
    item.querySelector(".percent").textContent = percent(probability);
  });

  statusRegion.replaceChildren(verdict);
  details.replaceChildren(more);
}

// ---- Boxes around the digits found ----------------------------------------

const padBoxes = document.getElementById("pad-boxes");
const previewBoxes = document.getElementById("preview-boxes");

// Each box is placed in shares of the picture's size, so it stays on its digit
// however large the pad or the preview is shown.
function drawBoxes(layer, digits, width, height) {
  layer.replaceChildren(...digits.map((digit) => {
    const [left, top, right, bottom] = digit.box;
    const box = document.createElement("div");
    box.className = "box";
    box.style.left = `${(100 * left) / width}%`;
    box.style.top = `${(100 * top) / height}%`;
    box.style.width = `${(100 * (right - left)) / width}%`;
    box.style.height = `${(100 * (bottom - top)) / height}%`;
    const tag = document.createElement("span");
    tag.className = "box-value";
    tag.textContent = String(digit.value);
    box.append(tag);
    return box;
  }));
}

function clearBoxes() {
  padBoxes.replaceChildren();
  previewBoxes.replaceChildren();
}

function showError(message) {
  const paragraph = document.createElement("p");
  paragraph.id = "error";
  paragraph.className = "error";
  paragraph.textContent = sentence(message);
  statusRegion.replaceChildren(paragraph);
  details.replaceChildren();
}

function showPlaceholder() {
  statusRegion.replaceChildren(cloneTemplate("placeholder-template"));
  details.replaceChildren();
}

// aria-busy lets screen readers wait for the finished result instead of
// announcing the half-replaced region.
function setBusy(busy) {
  statusRegion.setAttribute("aria-busy", String(busy));
  resultPanel.classList.toggle("busy", busy);
}

// On a narrow screen the answer may be out of sight of the control used.
function bringResultIntoView() {
  const box = statusRegion.getBoundingClientRect();
  if (box.top >= 0 && box.bottom <= window.innerHeight) return;
  const still = window.matchMedia("(prefers-reduced-motion: reduce)").matches;
  resultPanel.scrollIntoView({ block: "start", behavior: still ? "auto" : "smooth" });
}

// ---- Asking the server ----------------------------------------------------

// The request in flight, so a newer one (the next stroke, another file)
// replaces it instead of racing it.
let inFlight = null;
// What the shown result is about: "drawing" or "image".
let shownSource = null;
// The last picture sent, asked again when "Show why" is switched.
let lastAsked = null;

function cancelRequest() {
  if (inFlight) {
    inFlight.controller.abort();
    inFlight = null;
    setBusy(false);
  }
}

async function readJson(response) {
  try {
    return await response.json();
  } catch {
    return null; // a proxy's HTML error page, for example
  }
}

// ``size`` is the picture's [width, height] in pixels, for placing the boxes.
async function recognise(blob, filename, source, size) {
  cancelRequest();
  const request = { controller: new AbortController(), source };
  inFlight = request;
  setBusy(true);
  const upload = new FormData();
  upload.append("file", blob, filename);
  const started = performance.now();
  lastAsked = { blob, filename, source };
  const url = explainToggle.checked ? `${predictUrl}?explain=1` : predictUrl;
  try {
    const response = await fetch(url, {
      method: "POST",
      body: upload,
      signal: request.controller.signal,
    });
    const body = await readJson(response);
    const elapsed = performance.now() - started;
    clearBoxes();
    if (response.ok && body) {
      showResult(body, elapsed);
      const layer = source === "drawing" ? padBoxes : previewBoxes;
      if (size) drawBoxes(layer, body.digits, ...size);
    } else {
      showError(body?.error?.message ?? `The server answered with status ${response.status}`);
    }
    shownSource = source;
    if (source === "image") bringResultIntoView();
  } catch (error) {
    if (error.name === "AbortError") return; // replaced by a newer request
    showError("The server could not be reached. Check the connection and try again");
    shownSource = source;
  } finally {
    if (inFlight === request) {
      inFlight = null;
      setBusy(false);
    }
  }
}

// ---- Images: choose, drop or paste ----------------------------------------

let previewUrl = null;

function showPreview(file) {
  if (previewUrl) URL.revokeObjectURL(previewUrl);
  previewUrl = URL.createObjectURL(file);
  preview.src = previewUrl;
  preview.hidden = false;
}

// A dropped or pasted file also goes into the file input, so the form and
// its Recognise button hold what is shown.
function putInFileInput(file) {
  const transfer = new DataTransfer();
  transfer.items.add(file);
  fileInput.files = transfer.files;
}

// The preview shows the picture upright, as the server reads it, so the boxes
// are placed on its natural size once it has loaded.
function useImage(file) {
  showPreview(file);
  clearBoxes();
  const loaded = preview.decode().then(() => [preview.naturalWidth, preview.naturalHeight],
    () => null);
  loaded.then((size) => recognise(file, file.name || "image.png", "image", size));
}

function carriesFiles(event) {
  return Array.from(event.dataTransfer?.types ?? []).includes("Files");
}

function onDragOver(event) {
  if (!carriesFiles(event)) return;
  event.preventDefault(); // allows the drop
  event.dataTransfer.dropEffect = "copy";
  dropZone.classList.add("dragging");
}

function onDragLeave(event) {
  if (event.relatedTarget === null) dropZone.classList.remove("dragging"); // left the window
}

function onDrop(event) {
  if (!carriesFiles(event)) return;
  event.preventDefault(); // the browser would otherwise open the file
  dropZone.classList.remove("dragging");
  const file = event.dataTransfer.files[0];
  putInFileInput(file);
  useImage(file);
}

function onPaste(event) {
  const files = Array.from(event.clipboardData?.files ?? []);
  const image = files.find((file) => file.type.startsWith("image/"));
  if (!image) {
    showError("The clipboard holds no image. Copy a picture, then paste it here");
    return;
  }
  event.preventDefault();
  putInFileInput(image);
  useImage(image);
}

function onFileChosen() {
  const file = fileInput.files[0];
  if (file) useImage(file);
}

function onSubmit(event) {
  event.preventDefault();
  const file = fileInput.files[0];
  if (file) {
    useImage(file);
  } else {
    showError("Choose an image file first");
  }
}

// ---- The drawing pad ------------------------------------------------------

// The pen's width as a share of the pad's height: once the server scales a
// digit as tall as the pad to 20 pixels, this is close to the pen of the MNIST digits.
const PEN_WIDTH = 0.065;
// The pad is this many times as wide as it is high, room for a number.
const PAD_ASPECT = 2;
const INK = "#111";
const PAPER = "#fff";
// Keyboard pen steps, as shares of the pad's height (across too: the pen moves as
// far either way).
const STEP = 1 / 40;
const BIG_STEP = 1 / 10;

// Strokes are lists of points in 0..1 pad coordinates, so they survive the
// pad being resized and can be redrawn after an undo.
let strokes = [];
let stroke = null; // the stroke being drawn
let pointerId = null; // the pointer drawing it
const keyboardPen = { x: 0.5, y: 0.5 };

function toPixels(point) {
  return [point.x * canvas.width, point.y * canvas.height];
}

function paintStroke(points) {
  context.lineWidth = PEN_WIDTH * canvas.height;
  context.lineCap = "round";
  context.lineJoin = "round";
  context.strokeStyle = INK;
  context.fillStyle = INK;
  context.beginPath();
  if (points.length === 1) {
    const [x, y] = toPixels(points[0]);
    context.arc(x, y, context.lineWidth / 2, 0, 2 * Math.PI);
    context.fill();
    return;
  }
  context.moveTo(...toPixels(points[0]));
  for (const point of points.slice(1)) context.lineTo(...toPixels(point));
  context.stroke();
}

function repaint() {
  context.fillStyle = PAPER;
  context.fillRect(0, 0, canvas.width, canvas.height);
  for (const points of strokes) paintStroke(points);
  if (stroke) paintStroke(stroke);
}

// The canvas keeps one backing pixel per device pixel, so ink stays sharp on
// phones; strokes are redrawn at the new size.
function fitPadToScreen() {
  const width = Math.round(canvas.getBoundingClientRect().width * window.devicePixelRatio);
  if (width > 0 && width !== canvas.width) {
    canvas.width = width;
    canvas.height = Math.round(width / PAD_ASPECT);
    repaint();
  }
}

function startStroke(point) {
  stroke = [point];
  repaint();
}

// The whole pad is repainted, not just the new segment, so what is seen is
// exactly what an undo redraws and what is sent.
function extendStroke(point) {
  stroke.push(point);
  repaint();
}

function endStroke() {
  if (!stroke) return;
  strokes.push(stroke);
  stroke = null;
  predictDrawing();
}

function predictDrawing() {
  if (strokes.length === 0) {
    showError("Draw a digit on the pad first");
    return;
  }
  const sent = drawingToSend();
  const size = [sent.width, sent.height];
  sent.toBlob((png) => {
    if (png) recognise(png, "drawing.png", "drawing", size);
  }, "image/png");
}

// The server reads a picture at most this many pixels on its longer side, so a larger
// pad (a phone's keeps a pixel per device pixel) is sent scaled down to it: a
// 1200x600 pad is a fourteenth of the pixels to send and to decode.
const SENT_SIZE = Number(form.dataset.readSize);

function drawingToSend() {
  const scale = SENT_SIZE / Math.max(canvas.width, canvas.height);
  if (scale >= 1) return canvas;
  const small = document.createElement("canvas");
  small.width = Math.max(1, Math.round(canvas.width * scale));
  small.height = Math.max(1, Math.round(canvas.height * scale));
  const smallContext = small.getContext("2d");
  smallContext.imageSmoothingQuality = "high";
  smallContext.drawImage(canvas, 0, 0, small.width, small.height);
  return small;
}

// An emptied pad leaves nothing to show for it.
function forgetDrawingResult() {
  if (inFlight?.source === "drawing") cancelRequest();
  padBoxes.replaceChildren();
  if (shownSource === "drawing") {
    showPlaceholder();
    shownSource = null;
  }
}

function undo() {
  if (stroke) {
    stroke = null; // a keyboard stroke still being drawn
  } else {
    strokes.pop();
  }
  showKeyboardPen();
  repaint();
  if (strokes.length > 0) {
    predictDrawing();
  } else {
    forgetDrawingResult();
  }
}

function clearPad() {
  strokes = [];
  stroke = null;
  showKeyboardPen();
  repaint();
  forgetDrawingResult();
}

function padPoint(event) {
  const box = canvas.getBoundingClientRect();
  const clamp = (value) => Math.min(1, Math.max(0, value));
  return { x: clamp((event.clientX - box.left) / box.width), y: clamp((event.clientY - box.top) / box.height) };
}

function onPointerDown(event) {
  if (pointerId !== null || event.button !== 0) return; // one pen at a time, main button only
  if (stroke) endStroke(); // a keyboard stroke still being drawn
  pointerId = event.pointerId;
  canvas.setPointerCapture(pointerId);
  startStroke(padPoint(event));
}

function onPointerMove(event) {
  if (event.pointerId !== pointerId) return;
  // Fast strokes deliver several positions per event; all of them make a smoother line.
  const samples = event.getCoalescedEvents?.() ?? [];
  for (const sample of samples.length > 0 ? samples : [event]) extendStroke(padPoint(sample));
}

function onPointerUp(event) {
  if (event.pointerId !== pointerId) return;
  pointerId = null;
  endStroke();
}

// The keyboard pen: a marker shows where it is, and while it is down each
// move draws.
function showKeyboardPen() {
  penMarker.hidden = !canvas.matches(":focus-visible");
  penMarker.classList.toggle("down", stroke !== null && pointerId === null);
  penMarker.style.left = `${keyboardPen.x * 100}%`;
  penMarker.style.top = `${keyboardPen.y * 100}%`;
}

function moveKeyboardPen(dx, dy) {
  keyboardPen.x = Math.min(1, Math.max(0, keyboardPen.x + dx / PAD_ASPECT));
  keyboardPen.y = Math.min(1, Math.max(0, keyboardPen.y + dy));
  if (stroke && pointerId === null) extendStroke({ ...keyboardPen });
  showKeyboardPen();
}

function toggleKeyboardPen() {
  if (stroke) {
    endStroke();
  } else {
    startStroke({ ...keyboardPen });
  }
  showKeyboardPen();
}

const PEN_MOVES = { ArrowUp: [0, -1], ArrowDown: [0, 1], ArrowLeft: [-1, 0], ArrowRight: [1, 0] };

function onPadKey(event) {
  if (pointerId !== null) return;
  if (event.key in PEN_MOVES) {
    const [dx, dy] = PEN_MOVES[event.key];
    const step = event.shiftKey ? BIG_STEP : STEP;
    moveKeyboardPen(dx * step, dy * step);
  } else if (event.key === " " || event.key === "Enter") {
    toggleKeyboardPen();
  } else if (event.key === "Escape" && stroke) {
    endStroke();
    showKeyboardPen();
  } else {
    return;
  }
  event.preventDefault(); // arrows and Space would scroll the page
}

function onPadBlur() {
  if (stroke && pointerId === null) endStroke(); // lifting the pen when leaving the pad
  penMarker.hidden = true;
}

function onUndoShortcut(event) {
  const undoKey = (event.ctrlKey || event.metaKey) && !event.shiftKey && event.key === "z";
  if (undoKey && !(event.target instanceof HTMLInputElement)) {
    event.preventDefault();
    undo();
  }
}

// ---- Start ----------------------------------------------------------------

function start() {
  document.getElementById("draw-panel").hidden = false;
  for (const element of document.querySelectorAll(".js-only")) element.hidden = false;

  form.addEventListener("submit", onSubmit);
  explainToggle.addEventListener("change", () => {
    if (lastAsked && shownSource) recognise(lastAsked.blob, lastAsked.filename, lastAsked.source);
  });
  fileInput.addEventListener("change", onFileChosen);
  preview.addEventListener("error", () => { preview.hidden = true; }); // not a picture the browser shows
  document.addEventListener("dragenter", onDragOver);
  document.addEventListener("dragover", onDragOver);
  document.addEventListener("dragleave", onDragLeave);
  document.addEventListener("drop", onDrop);
  document.addEventListener("paste", onPaste);

  canvas.addEventListener("pointerdown", onPointerDown);
  canvas.addEventListener("pointermove", onPointerMove);
  canvas.addEventListener("pointerup", onPointerUp);
  canvas.addEventListener("pointercancel", onPointerUp);
  canvas.addEventListener("keydown", onPadKey);
  canvas.addEventListener("focus", showKeyboardPen);
  canvas.addEventListener("blur", onPadBlur);
  document.getElementById("undo").addEventListener("click", undo);
  document.getElementById("clear").addEventListener("click", clearPad);
  document.getElementById("predict").addEventListener("click", predictDrawing);
  document.addEventListener("keydown", onUndoShortcut);

  new ResizeObserver(fitPadToScreen).observe(canvas);
  repaint();
}

start();
