// Shows predictions in place, without a page reload. Without JavaScript the
// form posts to the server, which renders the same result.
"use strict";

function renderResult(body) {
  const status = document.getElementById("status");
  const details = document.getElementById("details");
  status.replaceChildren();
  details.replaceChildren();

  const line = document.createElement("p");
  line.append("The digit is ");
  const digit = document.createElement("output");
  digit.id = "prediction";
  digit.className = "prediction";
  digit.textContent = String(body.prediction);
  line.append(digit);
  const confidence = document.createElement("p");
  confidence.id = "confidence";
  confidence.textContent = `Confidence ${(body.confidence * 100).toFixed(1)}%`;
  status.append(line, confidence);

  if (body.input_image) {
    const figure = document.createElement("figure");
    const image = document.createElement("img");
    image.id = "input-image";
    image.src = body.input_image;
    image.width = 112;
    image.height = 112;
    image.alt = "The 28 by 28 image the model saw";
    const caption = document.createElement("figcaption");
    caption.textContent = "What the model saw";
    figure.append(image, caption);
    details.append(figure);
  }
  const list = document.createElement("ol");
  list.id = "probabilities";
  list.className = "probabilities";
  list.start = 0;
  body.probabilities.forEach((p, index) => {
    const item = document.createElement("li");
    const label = document.createElement("span");
    label.className = "digit";
    label.textContent = String(index);
    const meter = document.createElement("meter");
    meter.min = 0;
    meter.max = 1;
    meter.value = p;
    const percent = document.createElement("span");
    percent.className = "percent";
    percent.textContent = `${(p * 100).toFixed(1)}%`;
    item.append(label, meter, percent);
    list.append(item);
  });
  details.append(list);
}

function renderError(message) {
  const status = document.getElementById("status");
  document.getElementById("details").replaceChildren();
  const paragraph = document.createElement("p");
  paragraph.id = "error";
  paragraph.className = "error";
  paragraph.textContent = message;
  status.replaceChildren(paragraph);
}

async function submitUpload(event) {
  event.preventDefault();
  const form = event.currentTarget;
  try {
    const response = await fetch("/predict?input_image=1", {
      method: "POST",
      body: new FormData(form),
    });
    const body = await response.json();
    if (response.ok) {
      renderResult(body);
    } else {
      renderError(body.error ? body.error.message : `The server answered ${response.status}.`);
    }
  } catch (error) {
    renderError("The server could not be reached. Please try again.");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("upload-form").addEventListener("submit", submitUpload);
});
