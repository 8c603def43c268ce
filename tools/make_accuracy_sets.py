#!/usr/bin/env python3
"""Writes tests/fixtures/accuracy/: synthetic Spanish passages, questions and texts, made by us.

    python tools/make_accuracy_sets.py

Licence of the generated sets: CC0 1.0 (public domain dedication), like the script. The
passages are built from templates and fixed word lists with a fixed seed, so they are varied
but not true facts; they exist to compare densa's int8 and f32 embeddings and rankings
(tests/accuracy_int8.rs, docs/ACCURACY.md), not to judge a model's knowledge.

Files:
  passages.jsonl   600 {"id", "title", "text"}
  questions.jsonl  200 {"question", "passage_id"}   (the passage the question was made from)
  texts.txt        250 short Spanish sentences of mixed kinds (questions, statements, dialogue)
"""
import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "accuracy"

CIUDADES = ["Alcalá del Río", "Villanueva de la Sierra", "Puerto Lumbreras", "San Vicente del Monte", "Torrealta",
            "Castrojeriz", "Almendralejo", "Benicarló", "Sotillo de la Ribera", "Peñafiel", "Medina del Campo",
            "Cazorla", "Frigiliana", "Betanzos", "Laguardia", "Albarracín", "Ordesa", "Cangas de Onís", "Olite",
            "Zafra", "Úbeda", "Baeza", "Ronda", "Trujillo", "Hervás", "Llanes", "Cudillero", "Potes", "Sigüenza",
            "Chinchón", "Tarazona", "Aínsa", "Morella", "Peñíscola", "Altea", "Xàtiva", "Requena", "Daroca",
            "Calatayud", "Almagro"]
REGIONES = ["Andalucía", "Aragón", "Asturias", "Cantabria", "Castilla y León", "Castilla-La Mancha", "Cataluña",
            "Extremadura", "Galicia", "La Rioja", "Madrid", "Murcia", "Navarra", "el País Vasco", "la Comunidad Valenciana"]
MONUMENTOS = ["castillo", "puente romano", "monasterio", "acueducto", "palacio renacentista", "torre mudéjar",
              "teatro romano", "barrio judío", "catedral gótica", "mercado de abastos", "faro", "molino de viento"]
PLATOS = ["el cocido", "las migas", "el gazpacho", "el pulpo a la gallega", "la fabada", "el pisto", "el salmorejo",
          "el cordero asado", "el bacalao al pil pil", "el arroz con costra", "la caldereta de cordero",
          "la trucha a la navarra", "los pimientos rellenos"]
RIOS = ["Tajo", "Duero", "Ebro", "Guadalquivir", "Miño", "Júcar", "Segura", "Guadiana", "Sil", "Pisuerga", "Esla", "Turia"]
# (masculine, feminine)
OFICIOS = [("alfarero", "alfarera"), ("panadero", "panadera"), ("arquitecto", "arquitecta"), ("pescador", "pescadora"),
           ("maestro", "maestra"), ("relojero", "relojera"), ("enfermero", "enfermera"), ("carpintero", "carpintera"),
           ("bibliotecario", "bibliotecaria"), ("viticultor", "viticultora"), ("ingeniero", "ingeniera"), ("pastor", "pastora")]
# (name, feminine?)
NOMBRES = [("Lucía", True), ("Mateo", False), ("Carmen", True), ("Javier", False), ("Elena", True), ("Álvaro", False),
           ("Inés", True), ("Tomás", False), ("Nuria", True), ("Rodrigo", False), ("Ainhoa", True), ("Gonzalo", False),
           ("Begoña", True), ("Íñigo", False), ("Rocío", True), ("Xabier", False), ("Montserrat", True), ("Iker", False),
           ("Pilar", True), ("Óscar", False)]
APELLIDOS = ["García", "Fernández", "López", "Martínez", "Sánchez", "Pérez", "Gómez", "Ruiz", "Díaz", "Moreno",
             "Muñoz", "Álvarez", "Romero", "Navarro", "Torres", "Domínguez", "Vázquez", "Ramos", "Gil", "Serrano"]
FIESTAS = ["la feria de ganado", "las fiestas de San Juan", "la romería de la Virgen", "el festival de música antigua",
           "la semana del teatro", "la fiesta de la vendimia", "el carnaval", "la feria del libro"]
MESES = ["enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
         "noviembre", "diciembre"]


def passage(rng, i):
    kind = i % 5
    ciudad, region, rio = rng.choice(CIUDADES), rng.choice(REGIONES), rng.choice(RIOS)
    first, feminine = rng.choice(NOMBRES)
    nombre = f"{first} {rng.choice(APELLIDOS)} {rng.choice(APELLIDOS)}"
    year, n = rng.randint(1100, 2020), rng.randint(800, 95000)
    if kind == 0:
        title = ciudad
        text = (f"{ciudad} es un municipio de {region} con {n} habitantes, a orillas del río {rio}. "
                f"Su {rng.choice(MONUMENTOS)}, construido en {year}, recibe cada año a miles de visitantes, "
                f"y su plato más conocido es {rng.choice(PLATOS)}.")
        question = f"¿Cuántos habitantes tiene {ciudad}?"
    elif kind == 1:
        oficio = rng.choice(OFICIOS)[1 if feminine else 0]
        title = nombre
        text = (f"{nombre} fue {oficio} en {ciudad} durante más de {rng.randint(10, 45)} años. "
                f"En {year} recibió un premio de {region} por su trabajo, y todavía hoy se recuerda su taller "
                f"junto al {rng.choice(MONUMENTOS)}.")
        question = f"¿A qué se dedicaba {nombre}?"
    elif kind == 2:
        fiesta, mes = rng.choice(FIESTAS), rng.choice(MESES)
        title = f"{fiesta.capitalize()} de {ciudad}"
        text = (f"Cada {mes}, {ciudad} celebra {fiesta}, que reúne a unas {n} personas. "
                f"La tradición comenzó en {year}, cuando los vecinos quisieron agradecer una buena cosecha "
                f"junto al río {rio}.")
        question = f"¿En qué mes se celebra {fiesta} de {ciudad}?"
    elif kind == 3:
        title = f"Río {rio}"
        km = rng.randint(60, 1000)
        text = (f"El río {rio} recorre {km} kilómetros y atraviesa {region}. A su paso por {ciudad} "
                f"forma un meandro donde en {year} se levantó un {rng.choice(MONUMENTOS)}; hoy es un paraje "
                f"protegido con nutrias, garzas y martines pescadores.")
        question = f"¿Qué río forma un meandro en {ciudad}?"
    else:
        plato = rng.choice(PLATOS)
        title = f"{plato[0].upper()}{plato[1:]} de {ciudad}"
        text = (f"{plato[0].upper()}{plato[1:]} de {ciudad} se prepara a fuego lento durante {rng.randint(2, 9)} horas. "
                f"La receta, documentada en {year}, lleva productos de {region} y se sirve en fiestas "
                f"familiares, sobre todo en {rng.choice(MESES)}.")
        question = f"¿Cuánto tiempo se cocina {plato} de {ciudad}?"
    return {"id": f"p{i:04d}", "title": title, "text": text}, question


def texts(rng, count):
    out = []
    for i in range(count):
        kind = i % 5
        if kind == 0:
            out.append(f"¿Sabes si el {rng.choice(MONUMENTOS)} de {rng.choice(CIUDADES)} abre los lunes?")
        elif kind == 1:
            out.append(f"Mañana viajo a {rng.choice(CIUDADES)} para probar {rng.choice(PLATOS)}.")
        elif kind == 2:
            out.append(f"—¡Qué frío hace en {rng.choice(MESES)}! —dijo {rng.choice(NOMBRES)[0]} al salir del tren.")
        elif kind == 3:
            first, feminine = rng.choice(NOMBRES)
            oficio = rng.choice(OFICIOS)[1 if feminine else 0]
            out.append(f"{first}, {oficio} en {rng.choice(REGIONES)}, explicó cómo cambió su oficio desde {rng.randint(1950, 2020)}.")
        else:
            out.append(f"El caudal del {rng.choice(RIOS)} bajó un {rng.randint(3, 60)} % este verano, según los técnicos.")
    return out


def main():
    rng = random.Random(20261126)
    OUT.mkdir(parents=True, exist_ok=True)
    passages, questions = [], []
    for i in range(600):
        p, q = passage(rng, i)
        passages.append(p)
        questions.append({"question": q, "passage_id": p["id"]})
    picked = rng.sample(questions, 200)
    with open(OUT / "passages.jsonl", "w", encoding="utf-8") as f:
        for p in passages:
            f.write(json.dumps(p, ensure_ascii=False) + "\n")
    with open(OUT / "questions.jsonl", "w", encoding="utf-8") as f:
        for q in picked:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    (OUT / "texts.txt").write_text("\n".join(texts(rng, 250)) + "\n", encoding="utf-8")
    (OUT / "LICENSE").write_text("The files in this folder were generated by tools/make_accuracy_sets.py for densa.\n"
                                 "They are dedicated to the public domain under CC0 1.0.\n", encoding="utf-8")
    print(f"{OUT}: 600 passages, 200 questions, 250 texts")


if __name__ == "__main__":
    main()
