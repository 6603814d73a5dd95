// The reference's one script: filter the table of contents and operations, copy curl examples.
// No data from the network is rendered; text goes through textContent only.
const filter = document.getElementById("filter");
const ops = Array.from(document.querySelectorAll("section.op"));
const tocItems = Array.from(document.querySelectorAll("nav#toc li li"));

filter.addEventListener("input", () => {
  const needle = filter.value.trim().toLowerCase();
  for (const el of [...ops, ...tocItems]) {
    const text = (el.querySelector("h3, a") || el).textContent.toLowerCase();
    el.classList.toggle("hidden", needle !== "" && !text.includes(needle));
  }
});

for (const pre of document.querySelectorAll("pre.curl")) {
  const command = pre.textContent;
  const button = document.createElement("button");
  button.className = "copy";
  button.type = "button";
  button.textContent = "Copy";
  button.addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText(command);
      button.textContent = "Copied";
    } catch {
      button.textContent = "Select and copy";
    }
  });
  pre.prepend(button);
}
