// Run the script of tether's AsyncAPI page against a minimal stand-in DOM.
//
// Usage: node render_page.js PAGE.html
// Prints the rendered page as indented text, one element per line
// ("<tag> own text"), so a test can check what a browser would show.
"use strict";

const fs = require("fs");

class Node {}

class Element extends Node {
  constructor(tag) {
    super();
    this.tag = tag;
    this.attributes = {};
    this.children = [];
  }
  setAttribute(name, value) { this.attributes[name] = String(value); }
  append(...items) { this.children.push(...items); }
  replaceChildren(...items) { this.children = items; }
  outline(depth = 0) {
    const own = this.children.filter((c) => typeof c === "string").join("");
    const lines = ["  ".repeat(depth) + "<" + this.tag + "> " + own];
    for (const child of this.children) {
      if (child instanceof Element) lines.push(child.outline(depth + 1));
    }
    return lines.join("\n");
  }
}

const html = fs.readFileSync(process.argv[2], "utf8");
const embedded = html.match(/<script type="application\/json" id="asyncapi-document">([\s\S]*?)<\/script>/)[1];
const script = html.match(/<script>([\s\S]*?)<\/script>/)[1];
const root = new Element("main");
const document = {
  getElementById: (id) => (id === "root" ? root : { textContent: embedded }),
  createElement: (tag) => new Element(tag),
};
new Function("document", "Node", script)(document, Node);
process.stdout.write(root.outline() + "\n");
