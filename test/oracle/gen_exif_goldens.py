#!/usr/bin/python3
"""EXIF-orientation goldens from PIL (Debian's python3-pil), the independent oracle for models/exif.ts.

For every orientation 1..8 this writes a PNG (eXIf chunk) and a JPEG (APP1 Exif) of the same small non-square
picture into test/fixtures/exif/, and into goldens.json what PIL's ImageOps.exif_transpose (what Hugging Face's
load_image applies) makes of each file: the upright size and RGB bytes.

    /usr/bin/python3 test/oracle/gen_exif_goldens.py
"""
import base64
import json
import os

from PIL import Image, ImageOps

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures', 'exif')
W, H = 7, 4  # non-square, odd: a swapped or mirrored axis cannot go unnoticed


def picture(w, h, scale):
    img = Image.new('RGB', (w, h))
    for y in range(h):
        for x in range(w):
            # every pixel different; smooth enough at scale > 1 for a JPEG to keep it recognisable
            img.putpixel((x, y), (min(255, 30 * (x // scale) + 20), min(255, 60 * (y // scale) + 10), 90 + 10 * ((x // scale) % 3)))
    return img


def main():
    os.makedirs(OUT, exist_ok=True)
    goldens = {}
    for o in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        png_name, jpg_name = f'orient{o}.png', f'orient{o}.jpg'
        picture(W, H, 1).save(os.path.join(OUT, png_name), exif=exif.tobytes())
        # JPEG: 8x8-pixel blocks of one colour, quality 95, no chroma subsampling: decoders agree to a few levels
        picture(W * 8, H * 8, 8).save(os.path.join(OUT, jpg_name), quality=95, subsampling=0, exif=exif.tobytes())
        for name in (png_name, jpg_name):
            with Image.open(os.path.join(OUT, name)) as im:
                assert im.getexif().get(0x0112) == o, (name, im.getexif())
                up = ImageOps.exif_transpose(im).convert('RGB')
                goldens[name] = {'orientation': o, 'width': up.width, 'height': up.height, 'rgb': base64.b64encode(up.tobytes()).decode('ascii')}
    with open(os.path.join(OUT, 'goldens.json'), 'w') as f:
        json.dump({'generator': 'test/oracle/gen_exif_goldens.py', 'pil': Image.__version__, 'files': goldens}, f)
    print(f'wrote {len(goldens)} files and goldens.json to {OUT}')


if __name__ == '__main__':
    main()
