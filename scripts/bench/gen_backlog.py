#!/usr/bin/env python3
"""Backlog corpus for scripts/bench-backlog: realistic job applications, and their delivery.

  gen_backlog.py generate --count N --out DIR [--seed S] [--jobs J]
      Writes DIR/msgs/NNNNNN.eml (CRLF, ready for SMTP/LMTP), DIR/manifest.tsv
      (index, envelope sender, bytes, client, shape) and, last, DIR/COMPLETE. Deterministic: the
      same N and seed give the same bytes (every message has its own RNG, seeded from seed and
      index), whatever J. Writes into DIR.tmp and renames, so a half-written corpus is never used.

  gen_backlog.py deliver --corpus DIR --port P --rcpt ADDR [--host H] [--connections C]
      Delivers every message over LMTP (as Postfix would), envelope sender = the candidate,
      one LMTP session per connection, C connections in parallel (manifest order is kept
      within each connection).

Sizes (per message, as delivered): ~95% between 200 KB and 1.5 MB (log-normal, median
~520 KB), ~3% 1.5-3 MB, ~1.5% 3-5 MB: about 650 KB on average, 1.3 GB for 2000 messages.
Most of the bytes are incompressible, as in real CVs (photos, embedded fonts): the PDFs carry a
DCT (JPEG) image stream and font programs of random bytes, the DOCX a JPEG in word/media.
Only the Python standard library is used.
"""

import argparse
import base64
import binascii
import concurrent.futures
import hashlib
import io
import os
import quopri
import random
import shutil
import smtplib
import sys
import textwrap
import time
import unicodedata
import urllib.parse
import zipfile
import zlib
from datetime import datetime, timedelta, timezone

GENERATOR_VERSION = "3"
DOMAIN = "example.test"
KB = 1000

# ------------------------------------------------------------------ people ---

FR_GIVEN_F = [
    "Léa", "Chloé", "Zoé", "Inès", "Anaïs", "Héloïse", "Maëlle", "Noémie", "Clémence", "Joséphine",
    "Adèle", "Mélanie", "Hélène", "Océane", "Gaëlle", "Camille", "Manon", "Sarah", "Juliette",
    "Emma", "Louise", "Alice", "Margaux", "Pauline", "Élodie", "Émilie", "Aurélie", "Laëtitia",
    "Agnès", "Bérénice", "Capucine", "Solène", "Maïwenn", "Rose", "Lucie", "Marie-Claire",
    "Anne-Sophie", "Éloïse", "Françoise", "Nadège", "Yasmine", "Fatoumata", "Aïcha", "Nour",
]
FR_GIVEN_M = [
    "Jérôme", "Frédéric", "Théo", "Loïc", "Benoît", "Raphaël", "Mathéo", "Noé", "Gaël",
    "Timothée", "Aurélien", "Clément", "Stéphane", "Cédric", "Jérémy", "Maël", "Hugo", "Lucas",
    "Louis", "Arthur", "Jules", "Antoine", "Baptiste", "Valentin", "Maxime", "Quentin", "Bastien",
    "Grégoire", "Rémi", "Thibault", "Étienne", "Jean-Baptiste", "Pierre-Louis", "François",
    "Nicolas", "Yanis", "Mehdi", "Karim", "Moussa", "Kévin", "Anthony", "Mathis", "Élie",
]
FR_FAMILY = [
    "Dupré", "Lefèvre", "Léger", "Bérard", "Hébert", "Mercier", "Girard", "Béranger", "Lemaître",
    "Pérez", "Ménard", "Gauthier", "Martin", "Bernard", "Thomas", "Petit", "Robert", "Richard",
    "Durand", "Dubois", "Moreau", "Laurent", "Simon", "Michel", "Lefebvre", "Leroy", "Roux",
    "David", "Bertrand", "Morel", "Fournier", "Fontaine", "Chevalier", "Rousseau", "Garçon",
    "Le Goff", "Le Bihan", "Kerhervé", "Da Silva", "Dos Santos", "N'Diaye", "Diallo", "Nguyen",
    "Benali", "Haddad", "Müller", "Schœlcher", "Lacôte", "Crémieux", "Thériault", "Bégin",
    "de La Tour", "Delacroix", "Boulanger", "Faure", "André", "Blanc", "Guérin", "Muller",
    "Henry", "Roussel", "Nicolas", "Perrin", "Mathieu", "Clément", "Gaillard", "Brunet", "Noël",
]
EN_GIVEN = [
    "Emily", "Oliver", "Siobhán", "Seán", "Zoë", "Chloe", "Jack", "Harry", "Amelia", "Isla",
    "Niamh", "Aoife", "Ciarán", "Eóin", "Rhys", "Dylan", "Megan", "Sophie", "Hannah", "Grace",
    "James", "William", "Thomas", "Charlotte", "Olivia", "Freya", "Björn", "José", "Łukasz",
    "Małgorzata", "Søren", "Zoltán", "Ana", "João", "Priya", "Aarav", "Mei", "Kenji", "Noor",
]
EN_FAMILY = [
    "Clarke", "Hughes", "O'Brien", "Brontë", "Smith", "Jones", "Taylor", "Brown", "Williams",
    "Wilson", "Evans", "Davies", "Murphy", "Kelly", "Ó Súilleabháin", "MacLeod", "Fitzgerald",
    "Álvarez", "García", "Kowalski", "Wiśniewska", "Nørgaard", "Sørensen", "Schäfer", "Novák",
    "Ferreira", "Conceição", "Patel", "Sharma", "Chen", "Tanaka", "Okafor", "Adeyemi",
]


def ascii_fold(s):
    s = s.replace("œ", "oe").replace("Œ", "OE").replace("æ", "ae").replace("ø", "o").replace("Ø", "O")
    s = s.replace("ł", "l").replace("Ł", "L").replace("ß", "ss")
    return unicodedata.normalize("NFKD", s).encode("ascii", "ignore").decode()


def slug(s):
    s = ascii_fold(s).lower()
    return "".join(c if c.isalnum() else "-" for c in s).strip("-").replace("--", "-")


# ------------------------------------------------------------------- texts ---

FR_SUBJECTS = [
    "Candidature stage gestion de projet",
    "Candidature – Stage Assistant·e gestion de projet",
    "Candidature au stage d'assistant de gestion de projet",
    "Candidature spontanée",
    "Candidature stage septembre",
    "Stage gestion de projet – {name}",
    "Candidature {name} – stage",
    "Re: Offre de stage – gestion de projet",
    "candidature",
    "CANDIDATURE STAGE",
    "Demande de stage",
    "Candidature pour le stage (réf. 27R-GP)",
]
EN_SUBJECTS = [
    "Application: service design internship",
    "Internship application – {name}",
    "Application for the service design internship",
    "Service design internship",
    "Job application",
    "Application – {name}",
    "Re: Service design internship",
]

FR_OPEN = ["Madame, Monsieur,", "Bonjour,", "Madame, Monsieur,", "Chère équipe de La 27e Région,",
           "Bonjour Madame, Bonjour Monsieur,"]
FR_PARAS = [
    "Actuellement étudiant·e en master {field} à {school}, je vous adresse ma candidature pour le "
    "stage d'assistant·e de gestion de projet à partir de {month}.",
    "Vos travaux sur l'innovation publique, et en particulier le programme « Les Éclaireurs », "
    "rejoignent mon mémoire consacré à la prospective dans les collectivités territoriales.",
    "Lors de mon précédent stage chez {org}, j'ai coordonné un atelier de co-conception réunissant "
    "une trentaine d'agents et d'usagers, et rédigé la synthèse remise aux élus.",
    "J'ai mené une quinzaine d'entretiens avec des agents territoriaux ; cette expérience m'a appris "
    "à écouter, à reformuler et à rendre compte avec précision.",
    "Rigoureux·se et curieux·se, j'aime travailler en équipe pluridisciplinaire et je maîtrise les "
    "outils de suivi de projet (tableurs, diagrammes de Gantt, outils collaboratifs).",
    "Je serais heureux·se de mettre ces compétences au service de vos équipes, notamment pour "
    "l'organisation des résidences et l'évaluation des expérimentations.",
    "Mon engagement associatif auprès de {org} m'a par ailleurs familiarisé·e avec la gestion "
    "budgétaire et la recherche de financements.",
    "Je suis disponible pour un stage de six mois et me tiens à votre disposition pour un entretien.",
]
FR_CLOSE = [
    "Je vous prie d'agréer, Madame, Monsieur, l'expression de mes salutations distinguées.",
    "Dans l'attente de votre réponse, je vous prie de croire à mes sincères salutations.",
    "Bien à vous,",
    "Cordialement,",
]
FR_NOTES = [
    "Bonjour,\n\nVeuillez trouver ci-joint mon CV et ma lettre de motivation pour le stage.\n\nCordialement,\n{name}",
    "Bonjour,\n\nJe vous prie de trouver en pièces jointes ma candidature (CV et lettre).\n\nBien à vous,\n{name}",
    "Bonjour, ci-joint mon dossier de candidature. Bonne journée, {given}",
    "Madame, Monsieur,\n\nSuite à votre annonce, je vous transmets mon CV.\n\nCordialement\n{name}\n{phone}",
    "Bonjour,\n\nvoici ma candidature pour le stage. Je reste disponible pour tout complément.\n\n{given}",
]
EN_OPEN = ["Dear hiring team,", "Dear Sir or Madam,", "Hello,", "To whom it may concern,"]
EN_PARAS = [
    "I am writing to apply for the service design internship advertised on your website. I am "
    "currently completing an MA in {field} at {school} and will be available from {month}.",
    "Your work on public innovation, and the residencies you run with local authorities in "
    "particular, is exactly the kind of practice I would like to learn from.",
    "During a previous placement at {org} I facilitated co-design workshops with front-line staff "
    "and service users, and turned the findings into prototypes tested within weeks.",
    "I am comfortable with qualitative research, journey mapping and rapid prototyping, and I enjoy "
    "working in small multidisciplinary teams.",
    "I would be delighted to bring this experience to your team and to contribute to the evaluation "
    "of your experiments.",
    "I speak French fluently and would be happy to discuss my application at your convenience.",
]
EN_CLOSE = ["Yours faithfully,", "Kind regards,", "Best regards,", "Sincerely,", "Best wishes,"]
EN_NOTES = [
    "Hello,\n\nPlease find attached my resume and cover letter.\n\nBest regards,\n{name}",
    "Hi,\n\nAttached is my application for the internship.\n\nThanks,\n{given}",
    "Dear team,\n\nPlease find my CV attached. I look forward to hearing from you.\n\nKind regards,\n{name}\n{phone}",
]
FIELDS = ["de politiques publiques", "d'urbanisme", "de design de services", "de sociologie",
          "d'affaires publiques", "de géographie", "de management de projets culturels"]
EN_FIELDS = ["service design", "public policy", "design for social innovation", "urban studies"]
SCHOOLS = ["Sciences Po Lyon", "l'Université de Rennes 2", "l'ENSCI – Les Ateliers",
           "l'Université Paris-Est Créteil", "l'IEP de Grenoble", "l'Université de Strasbourg",
           "l'Université Toulouse – Jean-Jaurès", "Strate École de design"]
EN_SCHOOLS = ["the Royal College of Art", "Goldsmiths", "the University of Edinburgh",
              "Politecnico di Milano", "Central Saint Martins", "Aalto University"]
ORGS = ["la Métropole de Lyon", "la Région Bretagne", "un cabinet de conseil en innovation publique",
        "une mairie d'arrondissement", "l'association Bellastock", "la Fonda", "Emmaüs Connect"]
EN_ORGS = ["a London borough council", "Policy Lab", "a social enterprise in Glasgow",
           "the Danish Design Centre", "a public health charity"]
FR_MONTHS = ["septembre", "janvier", "mars", "mai", "juin"]
EN_MONTHS = ["September", "January", "March", "April", "October"]
CV_LINES_FR = ["Expériences professionnelles", "Formation", "Compétences", "Langues : anglais (C1), espagnol (B2)",
               "Centres d'intérêt : randonnée, photographie, théâtre", "Stage – chargé·e de mission",
               "Master 2 – politiques publiques", "Licence – sciences sociales", "Bénévolat"]
CV_LINES_EN = ["Experience", "Education", "Skills", "Languages: French (C1), Spanish (B2)",
               "Interests: hiking, photography", "Research assistant", "MA Service Design", "BA Sociology"]


def fill(rng, s, p):
    return s.format(**p)


def letter_text(rng, p, min_paras=3):
    fr = p["lang"] == "fr"
    paras = FR_PARAS if fr else EN_PARAS
    chosen = [paras[0]] + rng.sample(paras[1:-1], k=min(len(paras) - 2, rng.randint(min_paras - 1, 4))) + [paras[-1]]
    opening = rng.choice(FR_OPEN if fr else EN_OPEN)
    closing = rng.choice(FR_CLOSE if fr else EN_CLOSE)
    body = "\n\n".join(fill(rng, x, p) for x in chosen)
    return f"{opening}\n\n{body}\n\n{closing}\n\n{p['name']}\n"


# ------------------------------------------------------------- documents ---

def jpeg_like(rng, n):
    """A JPEG-shaped stream (SOI, APP0/JFIF, DQT, SOF0, DHT, SOS, entropy data, EOI) of n bytes.
    The entropy-coded part is random bytes: as incompressible as a real photo."""
    w, h = rng.choice([(600, 800), (900, 1200), (1200, 1600), (2048, 1536)])
    head = bytearray(b"\xff\xd8")
    head += b"\xff\xe0\x00\x10JFIF\x00\x01\x01\x01\x00\x48\x00\x48\x00\x00"
    head += b"\xff\xdb\x00\x43\x00" + bytes(rng.randrange(1, 100) for _ in range(64))
    head += b"\xff\xc0\x00\x11\x08" + h.to_bytes(2, "big") + w.to_bytes(2, "big") + b"\x03\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    head += b"\xff\xc4\x00\x1f\x00" + bytes(rng.randrange(0, 12) for _ in range(28))
    head += b"\xff\xda\x00\x0c\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00"
    body = n - len(head) - 2
    data = rng.randbytes(max(body, 0))
    # Byte stuffing as in real entropy-coded data: no marker (0xFF followed by non-zero) inside.
    data = data.replace(b"\xff", b"\xff\x00")[: max(body, 0)]
    if data.endswith(b"\xff"):
        data = data[:-1] + b"\x00"
    return bytes(head) + data + b"\xff\xd9", (w, h)


def pdf_escape(s):
    b = s.encode("cp1252", "replace")
    return b.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)")


def make_pdf(rng, title, lines, photo_bytes=0, font_bytes=0, pages=1, producer=None):
    """A well-formed PDF: catalog, pages, Helvetica text, optionally a DCT photo and an embedded
    font program (random bytes, as compressed font data is), xref table with correct offsets."""
    objs = []

    def add(body):
        objs.append(body)
        return len(objs)

    catalog = add(None)
    pages_obj = add(None)
    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    fontfile = None
    if font_bytes:
        prog = rng.randbytes(font_bytes)
        fontfile = add(b"<< /Length %d /Length1 %d /Filter /FlateDecode >>\nstream\n" % (len(prog), len(prog) * 2)
                       + prog + b"\nendstream")
        add(b"<< /Type /FontDescriptor /FontName /ABCDEF+Lato-Regular /Flags 32 /FontBBox [-120 -250 1100 950] "
            b"/ItalicAngle 0 /Ascent 950 /Descent -250 /CapHeight 700 /StemV 80 /FontFile2 %d 0 R >>" % fontfile)
    image = None
    if photo_bytes:
        jpg, (w, h) = jpeg_like(rng, photo_bytes)
        image = add(b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB "
                    b"/BitsPerComponent 8 /Filter /DCTDecode /Length %d >>\nstream\n" % (w, h, len(jpg))
                    + jpg + b"\nendstream")
    page_ids = []
    for n in range(pages):
        ops = [b"BT /F1 18 Tf 56 780 Td (" + pdf_escape(title) + b") Tj ET"]
        y = 740
        for line in lines[n * 30:(n + 1) * 30] or lines[:5]:
            ops.append(b"BT /F1 10 Tf 56 %d Td (" % y + pdf_escape(line) + b") Tj ET")
            y -= 14
        if image and n == 0:
            ops.append(b"q 110 0 0 140 430 650 cm /Im1 Do Q")
        content = zlib.compress(b"\n".join(ops), 6)
        c = add(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content) + content + b"\nendstream")
        res = b"<< /Font << /F1 %d 0 R >>" % font + (b" /XObject << /Im1 %d 0 R >>" % image if image else b"") + b" >>"
        page_ids.append(add(b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 595 842] /Resources " % pages_obj
                            + res + b" /Contents %d 0 R >>" % c))
    objs[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % pages_obj
    objs[pages_obj - 1] = (b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % p for p in page_ids)
                           + b"] /Count %d >>" % len(page_ids))
    info = add(b"<< /Producer (" + pdf_escape(producer or "LibreOffice 7.5") + b") /Title (" + pdf_escape(title) + b") >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % i + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objs) + 1))
    for off in offsets:
        out.write(b"%010d 00000 n \n" % off)
    out.write(b"trailer\n<< /Size %d /Root %d 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n"
              % (len(objs) + 1, catalog, info, xref))
    return out.getvalue()


def xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def make_docx(rng, text, image_bytes=0):
    """A minimal but valid Word document (zip), with an optional JPEG in word/media."""
    paras = "".join(f"<w:p><w:r><w:t xml:space=\"preserve\">{xml_escape(line)}</w:t></w:r></w:p>"
                    for line in text.split("\n"))
    doc = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
           '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main" '
           'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships">'
           f"<w:body>{paras}<w:sectPr><w:pgSz w:w=\"11906\" w:h=\"16838\"/></w:sectPr></w:body></w:document>")
    ct = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
          '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
          '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
          '<Default Extension="xml" ContentType="application/xml"/>'
          '<Default Extension="jpeg" ContentType="image/jpeg"/>'
          '<Override PartName="/word/document.xml" '
          'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
          '<Override PartName="/docProps/core.xml" ContentType="application/vnd.openxmlformats-package.core-properties+xml"/>'
          '</Types>')
    rels = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="word/document.xml"/>'
            '<Relationship Id="rId2" Type="http://schemas.openxmlformats.org/package/2006/relationships/metadata/core-properties" Target="docProps/core.xml"/>'
            '</Relationships>')
    core = ('<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
            '<cp:coreProperties xmlns:cp="http://schemas.openxmlformats.org/package/2006/metadata/core-properties" '
            'xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:creator>Microsoft Office User</dc:creator></cp:coreProperties>')
    buf = io.BytesIO()
    fixed = (2024, 11, 4, 10, 0, 0)  # deterministic zip timestamps
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in [("[Content_Types].xml", ct), ("_rels/.rels", rels), ("word/document.xml", doc),
                           ("docProps/core.xml", core)]:
            z.writestr(zipfile.ZipInfo(name, fixed), data, compress_type=zipfile.ZIP_DEFLATED)
        if image_bytes:
            jpg, _ = jpeg_like(rng, image_bytes)
            z.writestr(zipfile.ZipInfo("word/media/image1.jpeg", fixed), jpg, compress_type=zipfile.ZIP_STORED)
    return buf.getvalue()


# ------------------------------------------------------------------ MIME ---

CRLF = b"\r\n"


def b64_lines(data):
    enc = base64.b64encode(data)
    return CRLF.join(enc[i:i + 76] for i in range(0, len(enc), 76))


def qp(text, charset="utf-8"):
    raw = text.replace("\n", "\r\n").encode(charset, "replace")
    return quopri.encodestring(raw).replace(b"\r\n", b"\n").replace(b"\n", CRLF)


def enc_word(s, charset="UTF-8", mode="B"):
    """RFC 2047 encoded-word(s) for a header value, only when needed."""
    if all(32 <= ord(c) < 127 for c in s):
        return s
    raw = s.encode(charset, "replace")
    if mode == "B":
        return f"=?{charset}?B?{base64.b64encode(raw).decode()}?="
    out = []
    for byte in raw:
        ch = chr(byte)
        if ch == " ":
            out.append("_")
        elif ch.isalnum() and byte < 128:
            out.append(ch)
        else:
            out.append(f"={byte:02X}")
    return f"=?{charset}?Q?{''.join(out)}?="


def quoted_name(name):
    if any(c in name for c in ',.;:"()<>@[]\\\''):
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return name


def wrap(text, flowed=False):
    """Hard-wrap paragraphs at 72 columns, as clients sending 8bit text do (format=flowed keeps a
    trailing space on soft breaks)."""
    out = []
    for line in text.split("\n"):
        parts = textwrap.wrap(line, 72, break_long_words=False, break_on_hyphens=False) or [""]
        out.append(("\n" if not flowed else " \n").join(parts))
    return "\n".join(out)


def html_of(text):
    paras = "".join(f"<p>{xml_escape(p).replace(chr(10), '<br>')}</p>" for p in text.split("\n\n"))
    return f"<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; charset=utf-8\"></head><body><div dir=\"ltr\">{paras}</div></body></html>"


class Msg:
    """Builds a message the way a given client does; headers as (name, value) pairs."""

    def __init__(self):
        self.headers = []

    def h(self, name, value):
        self.headers.append((name, value))


def render_headers(headers):
    out = []
    for name, value in headers:
        line = f"{name}: {value}"
        out.append(line.encode("utf-8"))
    return CRLF.join(out) + CRLF


def part_bytes(headers, body):
    return render_headers(headers) + CRLF + body


def multipart(boundary, parts, preamble=b""):
    b = boundary.encode()
    out = bytearray(preamble)
    for p in parts:
        out += b"--" + b + CRLF + p + CRLF
    out += b"--" + b + b"--" + CRLF
    return bytes(out)


def attachment_part(client, doc, rng):
    name, ctype, data = doc["name"], doc["ctype"], doc["data"]
    hs = []
    if client == "gmail":
        n = enc_word(name, "UTF-8", "B")
        hs = [("Content-Type", f'{ctype}; name="{n}"'), ("Content-Disposition", f'attachment; filename="{n}"'),
              ("Content-Transfer-Encoding", "base64"),
              ("Content-ID", f"<f_{rng.getrandbits(40):010x}{doc['index']}>"),
              ("X-Attachment-Id", f"f_{rng.getrandbits(40):010x}{doc['index']}")]
    elif client == "outlook":
        n = enc_word(name, "iso-8859-1", "Q") if all(ord(c) < 256 for c in name) else enc_word(name, "utf-8", "B")
        hs = [("Content-Type", f'{ctype};\r\n\tname="{n}"'), ("Content-Description", n),
              ("Content-Disposition", f'attachment;\r\n\tfilename="{n}"; size={len(data)};\r\n'
               f'\tcreation-date="Mon, 04 Nov 2024 10:12:40 GMT";\r\n\tmodification-date="Mon, 04 Nov 2024 10:12:40 GMT"'),
              ("Content-Transfer-Encoding", "base64")]
    elif client in ("thunderbird", "webmail-2231"):
        charset = "UTF-8" if client == "thunderbird" else "ISO-8859-1"
        if all(32 <= ord(c) < 127 for c in name):
            disp = f'attachment; filename="{name}"'
            ct = f'{ctype}; name="{name}"'
        else:
            pct = urllib.parse.quote(name.encode(charset.lower().replace("iso-8859-1", "latin-1"), "replace"), safe="")
            disp = f"attachment;\r\n filename*={charset}''{pct}"
            ct = f"{ctype};\r\n name*={charset}''{pct}" if client == "webmail-2231" else f'{ctype}; name="{enc_word(name)}"'
        hs = [("Content-Type", ct), ("Content-Disposition", disp), ("Content-Transfer-Encoding", "base64")]
    elif client in ("apple", "iphone"):
        n = enc_word(name, "utf-8", "Q")
        hs = [("Content-Disposition", f'attachment;\r\n\tfilename="{n}"'),
              ("Content-Type", f'{ctype};\r\n\tx-unix-mode=0644;\r\n\tname="{n}"'),
              ("Content-Transfer-Encoding", "base64")]
    else:  # webmail: ISO-8859-1 encoded-words
        n = enc_word(name, "ISO-8859-1", "Q") if all(ord(c) < 256 for c in name) else enc_word(name)
        hs = [("Content-Type", f'{ctype}; name="{n}"'), ("Content-Disposition", f'attachment; filename="{n}"'),
              ("Content-Transfer-Encoding", "base64")]
    return part_bytes(hs, b64_lines(data))


def boundary_for(client, rng):
    if client == "gmail":
        return "000000000000" + f"{rng.getrandbits(64):016x}"[:14]
    if client == "outlook":
        return f"_004_{rng.getrandbits(128):032X}PR1P264MB{rng.randrange(1000, 9999)}FRAP_"
    if client == "thunderbird":
        return "------------" + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") for _ in range(24))
    if client in ("apple", "iphone"):
        return f"Apple-Mail={rng.getrandbits(128):032X}"[:50]
    return f"----=_Part_{rng.randrange(10**6, 10**7)}_{rng.randrange(10**8, 10**9)}.{rng.randrange(10**12, 10**13)}"


def text_parts(client, text, rng):
    """The body as this client sends it: (content bytes, is_multipart_alternative)."""
    if client == "gmail":
        alt = boundary_for(client, rng)
        plain = part_bytes([("Content-Type", 'text/plain; charset="UTF-8"'),
                            ("Content-Transfer-Encoding", "quoted-printable")], qp(text))
        html = part_bytes([("Content-Type", 'text/html; charset="UTF-8"'),
                           ("Content-Transfer-Encoding", "quoted-printable")], qp(html_of(text)))
        return part_bytes([("Content-Type", f'multipart/alternative; boundary="{alt}"')], multipart(alt, [plain, html]))
    if client == "outlook":
        alt = "_000_" + boundary_for(client, rng)[5:]
        charset = "iso-8859-1" if all(ord(c) < 256 for c in text) else "utf-8"
        plain = part_bytes([("Content-Type", f'text/plain; charset="{charset}"'),
                            ("Content-Transfer-Encoding", "quoted-printable")], qp(text, charset))
        html = part_bytes([("Content-Type", f'text/html; charset="{charset}"'),
                           ("Content-Transfer-Encoding", "quoted-printable")], qp(html_of(text), charset))
        return part_bytes([("Content-Type", f'multipart/alternative;\r\n\tboundary="{alt}"')], multipart(alt, [plain, html]))
    if client == "thunderbird":
        body = wrap(text, flowed=True).replace("\n", "\r\n").encode("utf-8")
        return part_bytes([("Content-Type", "text/plain; charset=UTF-8; format=flowed"),
                           ("Content-Transfer-Encoding", "8bit")], body)
    if client in ("apple", "iphone"):
        return part_bytes([("Content-Transfer-Encoding", "quoted-printable"),
                           ("Content-Type", "text/plain;\r\n\tcharset=utf-8")], qp(text))
    # webmails: ISO-8859-1, 8bit text + html alternative
    alt = boundary_for(client, rng)
    charset = "ISO-8859-1" if all(ord(c) < 256 for c in text) else "UTF-8"
    enc = "latin-1" if charset == "ISO-8859-1" else "utf-8"
    plain = part_bytes([("Content-Type", f"text/plain; charset={charset}"), ("Content-Transfer-Encoding", "8bit")],
                       wrap(text).replace("\n", "\r\n").encode(enc, "replace"))
    html = part_bytes([("Content-Type", f"text/html; charset={charset}"), ("Content-Transfer-Encoding", "8bit")],
                      html_of(text).replace("</p>", "</p>\n").replace("\n", "\r\n").encode(enc, "replace"))
    return part_bytes([("Content-Type", f"multipart/alternative; boundary=\"{alt}\"")], multipart(alt, [plain, html]))


CLIENTS = [("gmail", 34), ("outlook", 22), ("thunderbird", 8), ("apple", 8), ("iphone", 10),
           ("webmail", 10), ("webmail-2231", 8)]
MAIL_DOMAINS = {"gmail": "gmail", "outlook": "outlook", "thunderbird": "free", "apple": "icloud",
                "iphone": "icloud", "webmail": "orange", "webmail-2231": "laposte"}


def pick_weighted(rng, items):
    total = sum(w for _, w in items)
    x = rng.uniform(0, total)
    for item, w in items:
        x -= w
        if x <= 0:
            return item
    return items[-1][0]


def target_size(rng):
    """Delivered message size in bytes."""
    r = rng.random()
    if r < 0.015:
        return rng.randint(3_000 * KB, 5_000 * KB)
    if r < 0.045:
        return rng.randint(1_500 * KB, 3_000 * KB)
    return int(min(1_500 * KB, max(200 * KB, rng.lognormvariate(0, 0.45) * 520 * KB)))


def person(rng, index, lang):
    if lang == "fr":
        female = rng.random() < 0.6
        given = rng.choice(FR_GIVEN_F if female else FR_GIVEN_M)
        family = rng.choice(FR_FAMILY)
    else:
        given, family = rng.choice(EN_GIVEN), rng.choice(EN_FAMILY)
    name = f"{given} {family}"
    g, f = slug(given).replace("-", ""), slug(family).replace("-", "")
    # Unique per message: every application is a different candidate (and mail to unknown local
    # parts at example.test lands in the stack's catch-all, so acknowledgements are deliverable).
    local = rng.choice([f"{g}.{f}", f"{g[0]}{f}", f"{g}{f}", f"{f}.{g}", f"{g}_{f}"]) + f".{index:05d}"
    style = rng.random()
    if style < 0.55:
        display = name
    elif style < 0.72:
        display = f"{family.upper()} {given}"
    elif style < 0.80:
        display = f"{given.lower()} {family.lower()}"
    elif style < 0.86:
        display = f"{family}, {given}"
    elif style < 0.93:
        display = given
    else:
        display = None  # bare address
    phone = f"06 {rng.randrange(10, 99)} {rng.randrange(10, 99)} {rng.randrange(10, 99)} {rng.randrange(10, 99)}" \
        if lang == "fr" else f"+44 7{rng.randrange(100, 999)} {rng.randrange(100000, 999999)}"
    return {"given": given, "family": family, "name": name, "display": display, "local": local,
            "address": f"{local}@{DOMAIN}", "phone": phone, "lang": lang,
            "field": rng.choice(FIELDS if lang == "fr" else EN_FIELDS),
            "school": rng.choice(SCHOOLS if lang == "fr" else EN_SCHOOLS),
            "org": rng.choice(ORGS if lang == "fr" else EN_ORGS),
            "month": rng.choice(FR_MONTHS if lang == "fr" else EN_MONTHS)}


def doc_names(rng, p, kind, ext):
    g, f, fr = p["given"], p["family"], p["lang"] == "fr"
    if kind == "cv":
        options = [f"CV_{g}_{f}.{ext}", f"CV {g} {f}.{ext}", f"{f.upper()}_{g}_CV.{ext}", f"CV.{ext}",
                   f"cv-{slug(g)}-{slug(f)}.{ext}", f"CV {f} 2025.{ext}", f"MonCV.{ext}", f"CV{g}{f}.{ext}"]
        if not fr:
            options += [f"Resume - {g} {f}.{ext}", f"{g} {f} CV.{ext}", f"resume.{ext}", f"Curriculum Vitae.{ext}"]
    elif kind == "letter":
        options = [f"Lettre de motivation.{ext}", f"LM_{g}_{f}.{ext}", f"Lettre_motivation_{f}.{ext}",
                   f"lettre-de-motivation-stage.{ext}", f"LettreMotivation{g}.{ext}", f"LM.{ext}"] if fr else \
            [f"Cover Letter - {g} {f}.{ext}", f"cover_letter.{ext}", f"Cover letter {f}.{ext}", f"CoverLetter.{ext}"]
    elif kind == "both":
        options = [f"CV et lettre de motivation - {g} {f}.{ext}", f"Candidature_{f}_CV_LM.{ext}"] if fr else \
            [f"CV and cover letter - {g} {f}.{ext}"]
    elif kind == "unnamed":
        options = [f"{g}_{f}.{ext}", f"{f} {g}.{ext}", f"{g}{f}.{ext}", f"Document.{ext}", f"Scan_2025-01-1{rng.randrange(10)}.{ext}"]
    else:  # portfolio
        options = [f"Portfolio_{g}_{f}.{ext}", f"portfolio.{ext}", f"{f} - Portfolio.{ext}"]
    return rng.choice(options)


PDF = "application/pdf"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"


def generate_one(seed, index):
    rng = random.Random(f"mailroom-bench:{seed}:{index}")
    lang = "fr" if rng.random() < 0.8 else "en"
    p = person(rng, index, lang)
    client = pick_weighted(rng, CLIENTS)
    size = target_size(rng)
    # Attachment budget: base64 grows bytes by 4/3 plus line breaks; leave room for headers/body.
    budget = max(60 * KB, int((size - 2 * KB) * 57 / 78))

    shape = pick_weighted(rng, [("cv+letter", 60), ("cv+body-letter", 15), ("cv-only", 12), ("combined", 3),
                                ("unnamed-cv", 4), ("letter-only", 3), ("unnamed-pair", 3)])
    letter = letter_text(rng, p)
    big = size > 2_500 * KB
    docs = []

    def cv_doc(nbytes, name_kind="cv"):
        ext_docx = rng.random() < 0.06
        lines = [p["name"], p["address"], p["phone"]] + rng.sample(CV_LINES_FR if lang == "fr" else CV_LINES_EN, 6)
        lines += [f"{y} – {rng.choice(ORGS if lang == 'fr' else EN_ORGS)}" for y in range(2019, 2025)]
        if ext_docx:
            return {"kind": name_kind, "ctype": DOCX, "name": doc_names(rng, p, name_kind, "docx"),
                    "data": make_docx(rng, "\n".join(lines), image_bytes=max(0, nbytes - 8 * KB))}
        font = min(nbytes // 3, rng.randint(20 * KB, 120 * KB))
        return {"kind": name_kind, "ctype": PDF, "name": doc_names(rng, p, name_kind, "pdf"),
                "data": make_pdf(rng, f"{p['name']} – CV" if lang == "fr" else f"{p['name']} – Resume", lines,
                                 photo_bytes=max(4 * KB, nbytes - font - 1 * KB), font_bytes=font,
                                 pages=rng.choice([1, 1, 2]),
                                 producer=rng.choice(["Canva", "Microsoft® Word for Microsoft 365",
                                                      "LibreOffice 7.5", "Google Docs Renderer", "Quartz PDFContext"]))}

    def letter_doc(nbytes, name_kind="letter"):
        if rng.random() < 0.3:
            return {"kind": name_kind, "ctype": DOCX, "name": doc_names(rng, p, name_kind, "docx"),
                    "data": make_docx(rng, letter, image_bytes=max(8 * KB, nbytes - 6 * KB))}
        return {"kind": name_kind, "ctype": PDF, "name": doc_names(rng, p, name_kind, "pdf"),
                "data": make_pdf(rng, "Lettre de motivation" if lang == "fr" else "Cover letter", letter.split("\n"),
                                 font_bytes=max(4 * KB, nbytes - 4 * KB))}

    letter_size = min(budget // 3, rng.randint(25 * KB, 180 * KB))
    portfolio = big and rng.random() < 0.6
    if portfolio:
        port = int(budget * rng.uniform(0.55, 0.8))
        docs_budget = budget - port
    else:
        docs_budget = budget
    if shape == "cv+letter":
        docs = [cv_doc(docs_budget - letter_size), letter_doc(letter_size)]
        if rng.random() < 0.25:
            docs.reverse()
        note = rng.choice(FR_NOTES if lang == "fr" else EN_NOTES)
        body = note.format(**p)
    elif shape == "cv+body-letter":
        docs = [cv_doc(docs_budget)]
        body = letter
    elif shape == "cv-only":
        docs = [cv_doc(docs_budget)]
        body = rng.choice(FR_NOTES if lang == "fr" else EN_NOTES).format(**p)
    elif shape == "combined":
        docs = [cv_doc(docs_budget, "both")]
        body = rng.choice(FR_NOTES if lang == "fr" else EN_NOTES).format(**p)
    elif shape == "unnamed-cv":
        docs = [cv_doc(docs_budget, "unnamed")]
        body = rng.choice(FR_NOTES if lang == "fr" else EN_NOTES).format(**p)
    elif shape == "letter-only":
        docs = [letter_doc(docs_budget)]
        body = rng.choice(FR_NOTES if lang == "fr" else EN_NOTES).format(**p)
    else:  # two documents whose names do not tell
        d1, d2 = cv_doc(docs_budget - letter_size, "unnamed"), letter_doc(letter_size, "unnamed")
        if d1["name"] == d2["name"]:
            d2["name"] = "2_" + d2["name"]
        docs = [d1, d2]
        body = rng.choice(FR_NOTES if lang == "fr" else EN_NOTES).format(**p)
    if portfolio:
        lines = [f"Projet {k}" if lang == "fr" else f"Project {k}" for k in range(1, 13)]
        docs.append({"kind": "portfolio", "ctype": PDF, "name": doc_names(rng, p, "portfolio", "pdf"),
                     "data": make_pdf(rng, "Portfolio", lines, photo_bytes=port, pages=4)})
    if client == "iphone":
        body += "\n\nEnvoyé de mon iPhone" if lang == "fr" else "\n\nSent from my iPhone"
    elif client == "outlook" and rng.random() < 0.5:
        body += f"\n\n{p['name']}\n{p['phone']}"
    for i, d in enumerate(docs):
        d["index"] = i

    # Header fields.
    subject = rng.choice(FR_SUBJECTS if lang == "fr" else EN_SUBJECTS).format(name=p["name"])
    base = datetime(2025, 1, 6, 8, 0, tzinfo=timezone.utc)
    sent = base + timedelta(seconds=index * 1300 + rng.randrange(0, 1200))
    tz = timezone(timedelta(hours=1 if lang == "fr" else 0))
    date = sent.astimezone(tz).strftime("%a, %d %b %Y %H:%M:%S %z")
    mid_domain = {"gmail": "mail.gmail.com", "outlook": "PR1P264MB1234.FRAP264.PROD.OUTLOOK.COM",
                  "thunderbird": DOMAIN, "apple": DOMAIN, "iphone": DOMAIN}.get(client, "wwinf" + str(rng.randrange(1000, 9999)))
    message_id = f"<{hashlib.sha1(f'{seed}:{index}'.encode()).hexdigest()[:24]}.{index}@{mid_domain}>"
    if p["display"] is None:
        from_value = p["address"]
    elif rng.random() < 0.04 and client in ("thunderbird", "apple"):
        from_value = f"{quoted_name(p['display'])} <{p['address']}>"  # raw UTF-8 header (RFC 6532)
    else:
        mode = "Q" if client in ("outlook", "apple", "iphone", "webmail") else "B"
        disp = enc_word(p["display"], "UTF-8", mode)
        from_value = f"{disp if disp != p['display'] else quoted_name(disp)} <{p['address']}>"
    to_value = "contact@example.test" if rng.random() < 0.7 else "La 27e =?UTF-8?Q?R=C3=A9gion?= <contact@example.test>"

    hs = []
    if client == "outlook":
        hs += [("From", from_value), ("To", to_value), ("Subject", enc_word(subject, "iso-8859-1", "Q")
                                                         if all(ord(c) < 256 for c in subject) else enc_word(subject)),
               ("Thread-Topic", enc_word(subject)), ("Thread-Index", base64.b64encode(rng.randbytes(22)).decode()),
               ("Date", date), ("Message-ID", message_id), ("Accept-Language", "fr-FR, en-US"),
               ("Content-Language", "fr-FR" if lang == "fr" else "en-GB"), ("X-MS-Has-Attach", "yes"),
               ("X-MS-TNEF-Correlator", "")]
    elif client == "gmail":
        hs += [("MIME-Version", "1.0"), ("Date", date), ("Message-ID", message_id),
               ("Subject", enc_word(subject, "UTF-8", "B")), ("From", from_value), ("To", to_value)]
    elif client == "thunderbird":
        hs += [("Message-ID", message_id), ("Date", date), ("MIME-Version", "1.0"),
               ("User-Agent", "Mozilla Thunderbird"), ("Content-Language", "fr" if lang == "fr" else "en-GB"),
               ("To", to_value), ("From", from_value), ("Subject", enc_word(subject, "UTF-8", "Q"))]
    elif client in ("apple", "iphone"):
        hs += [("From", from_value), ("Mime-Version", "1.0 (1.0)" if client == "iphone" else "1.0 (Mac OS X Mail 16.0 \\(3774.600.62\\))"),
               ("Subject", enc_word(subject, "utf-8", "Q")), ("Date", date), ("Message-Id", message_id),
               ("To", to_value)]
        if client == "iphone":
            hs.append(("X-Mailer", "iPhone Mail (21F90)"))
    else:
        hs += [("Date", date), ("From", from_value), ("To", to_value), ("Message-ID", message_id),
               ("Subject", enc_word(subject, "ISO-8859-1", "Q") if all(ord(c) < 256 for c in subject) else enc_word(subject)),
               ("MIME-Version", "1.0"), ("X-Originating-IP", f"[192.0.2.{rng.randrange(1, 254)}]")]

    boundary = boundary_for(client, rng)
    body_part = text_parts(client, body, rng)
    parts = [body_part] + [attachment_part(client, d, rng) for d in docs]
    if client == "apple" and rng.random() < 0.5:
        # Apple Mail puts the signature text after the attachments.
        parts.append(part_bytes([("Content-Transfer-Encoding", "7bit"),
                                 ("Content-Type", "text/plain;\r\n\tcharset=us-ascii")], b"\r\n"))
    ctype = f'multipart/mixed; boundary="{boundary}"' if client != "outlook" else f'multipart/mixed;\r\n\tboundary="{boundary}"'
    hs.append(("Content-Type", ctype))
    if client == "outlook":
        hs.append(("MIME-Version", "1.0"))
    preamble = b"This is a multi-part message in MIME format." + CRLF if client in ("thunderbird", "webmail") else b""
    msg = render_headers(hs) + CRLF + multipart(boundary, parts, preamble)
    return msg, p["address"], client, shape


def _gen_range(args):
    seed, start, stop, outdir = args
    rows = []
    for i in range(start, stop):
        msg, sender, client, shape = generate_one(seed, i)
        path = os.path.join(outdir, "msgs", f"{i:06d}.eml")
        with open(path, "wb") as f:
            f.write(msg)
        rows.append((i, sender, len(msg), client, shape))
    return rows


def cmd_generate(a):
    final = os.path.abspath(a.out)
    stamp = f"version={GENERATOR_VERSION} count={a.count} seed={a.seed}"
    complete = os.path.join(final, "COMPLETE")
    if os.path.exists(complete) and open(complete).read().startswith(stamp):
        print(f"corpus {final} is complete ({stamp}); not regenerated", file=sys.stderr)
        return
    tmp = final + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.join(tmp, "msgs"))
    t0 = time.monotonic()
    chunk = 50
    tasks = [(a.seed, s, min(s + chunk, a.count + 1), tmp) for s in range(1, a.count + 1, chunk)]
    rows = []
    with concurrent.futures.ProcessPoolExecutor(max_workers=a.jobs) as ex:
        for done, part in enumerate(ex.map(_gen_range, tasks), 1):
            rows += part
            if done % 10 == 0 or done == len(tasks):
                print(f"  generated {len(rows)}/{a.count} ({sum(r[2] for r in rows) / 1e6:.0f} MB, "
                      f"{time.monotonic() - t0:.0f} s)", file=sys.stderr)
    rows.sort()
    total = sum(r[2] for r in rows)
    with open(os.path.join(tmp, "manifest.tsv"), "w") as f:
        f.write("index\tsender\tbytes\tclient\tshape\n")
        for r in rows:
            f.write("\t".join(str(x) for x in r) + "\n")
    with open(os.path.join(tmp, "COMPLETE"), "w") as f:
        f.write(f"{stamp} messages={len(rows)} bytes={total}\n")
    shutil.rmtree(final, ignore_errors=True)
    os.rename(tmp, final)
    sizes = sorted(r[2] for r in rows)
    print(f"corpus {final}: {len(rows)} messages, {total} bytes ({total / 1e9:.2f} GB), "
          f"median {sizes[len(sizes) // 2] / 1e3:.0f} KB, max {sizes[-1] / 1e6:.1f} MB, "
          f"{time.monotonic() - t0:.0f} s", file=sys.stderr)


def read_manifest(corpus):
    rows = []
    with open(os.path.join(corpus, "manifest.tsv")) as f:
        next(f)
        for line in f:
            i, sender, size, client, shape = line.rstrip("\n").split("\t")
            rows.append((int(i), sender, int(size)))
    return rows


def _deliver_slice(corpus, rows, host, port, rcpt, timeout):
    n = 0
    lmtp = smtplib.LMTP(host, port, timeout=timeout)
    try:
        lmtp.ehlo("bench.example.test")
        for i, sender, _ in rows:
            with open(os.path.join(corpus, "msgs", f"{i:06d}.eml"), "rb") as f:
                data = f.read()
            refused = lmtp.sendmail(sender, [rcpt], data)
            if refused:
                raise RuntimeError(f"message {i} refused: {refused}")
            n += 1
    finally:
        try:
            lmtp.quit()
        except Exception:
            pass
    return n


def cmd_deliver(a):
    rows = read_manifest(a.corpus)
    t0 = time.monotonic()
    c = max(1, a.connections)
    slices = [rows[k::c] for k in range(c)]
    with concurrent.futures.ThreadPoolExecutor(max_workers=c) as ex:
        futs = [ex.submit(_deliver_slice, a.corpus, s, a.host, a.port, a.rcpt, a.timeout) for s in slices]
        n = sum(f.result() for f in futs)
    dt = time.monotonic() - t0
    total = sum(r[2] for r in rows)
    print(f"delivered {n} messages ({total / 1e6:.0f} MB) over LMTP in {dt:.1f} s "
          f"({total / 1e6 / max(dt, 1e-9):.0f} MB/s)", file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--count", type=int, required=True)
    g.add_argument("--out", required=True)
    g.add_argument("--seed", type=int, default=27)
    g.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    d = sub.add_parser("deliver")
    d.add_argument("--corpus", required=True)
    d.add_argument("--host", default="127.0.0.1")
    d.add_argument("--port", type=int, required=True)
    d.add_argument("--rcpt", required=True)
    d.add_argument("--connections", type=int, default=2)
    d.add_argument("--timeout", type=float, default=120)
    a = ap.parse_args()
    if a.cmd == "generate":
        cmd_generate(a)
    else:
        cmd_deliver(a)


if __name__ == "__main__":
    main()
